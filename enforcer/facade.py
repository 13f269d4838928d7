"""What the local API and CLI see of a running enforcer.

The daemon implements `Enforcer`; `enforcer.api` serves it over HTTP and tests may fake it.
Every record here is plain data that serialises to JSON with `to_json()`.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class InstanceState(enum.Enum):
    PENDING = "pending"  # not placeable (see reason) or waiting for its turn
    CREATING = "creating"
    PULLING = "pulling"
    IMAGE_PULL_FAILED = "image-pull-failed"
    STARTING = "starting"  # running, startup probe not passed yet
    RUNNING = "running"
    BACKOFF = "backoff"  # crashed, waiting for the next retry
    EXITED = "exited"  # stopped for good (restart: never / on-failure with exit 0)
    FAILED = "failed"  # could not be created (bad mount, device gone, ...)
    STOPPING = "stopping"
    UNKNOWN = "unknown"  # runtime unavailable


class AppSource(enum.Enum):
    LOCAL = "local"  # edge-enforcer apply
    CONTROL = "control"  # received from control


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    state: str  # Docker's state: created, running, exited, ...
    restarts: int = 0
    last_exit_code: int | None = None
    ready: bool | None = None  # None: no readiness probe


@dataclass(frozen=True)
class InstanceStatus:
    id: str  # <app>.<service>.<n>
    app: str
    service: str
    tenant: str
    host: str
    version: str
    state: InstanceState
    ready: bool
    restarts: int
    reason: str = ""  # why pending/failed/backoff, '' when fine
    last_exit_code: int | None = None
    next_retry: float | None = None  # unix time of the next restart attempt
    containers: tuple[ContainerStatus, ...] = ()
    gpus: tuple[str, ...] = ()  # the host's GPUs assigned to it (PCI slots)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        return d


@dataclass(frozen=True)
class AppRecord:
    name: str
    version: str
    tenant: str
    source: AppSource
    document: Mapping[str, Any]  # canonical spec document
    updated: float  # unix time

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "tenant": self.tenant,
            "source": self.source.value,
            "spec": dict(self.document),
            "updated": self.updated,
        }


@dataclass(frozen=True)
class Event:
    seq: int  # increasing per enforcer process lifetime and persisted store
    time: float
    kind: str  # e.g. instance.started, instance.crashed, app.applied, runtime.unavailable
    message: str
    app: str = ""
    instance: str = ""
    tenant: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["fields"] = dict(self.fields)
        return d


class NotFound(Exception):
    """The named application or instance does not exist."""


class Conflict(Exception):
    """The request clashes with existing state (e.g. an app name owned by control)."""


class Forbidden(Exception):
    """The caller may not do this (a tenant token asking for what only the site admin may)."""


class Invalid(Exception):
    """The request is malformed; str() is the message for the user (may be multi-line)."""


class Enforcer(Protocol):
    """The daemon as the API sees it. All methods are safe to call concurrently."""

    async def apply(self, document: Mapping[str, Any]) -> tuple[AppRecord, bool]:
        """Validate and store a site-local application, then reconcile.

        Returns the record and whether anything changed. Raises Invalid (spec errors)
        or Conflict (name owned by control)."""

    async def remove(self, name: str, purge: bool = False) -> None:
        """Remove an application (NotFound if unknown); purge also drops persistent volumes."""

    def applications(self) -> list[AppRecord]: ...

    def application(self, name: str) -> AppRecord:
        """Raises NotFound."""

    def instances(self) -> list[InstanceStatus]: ...

    def logs(
        self, instance: str, container: str | None, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        """Raises NotFound (unknown instance/container) when iteration starts."""

    def events(self, since: int, follow: bool) -> AsyncIterator[Event]:
        """Events with seq > since; with follow, waits for new ones forever."""

    def host(self) -> dict[str, Any]:
        """This host: id, labels, devices, gpus, capacity."""

    async def site(self) -> dict[str, Any]:
        """The site from real state: name, labels, hosts, leader, store, control link."""

    async def health(self) -> dict[str, Any]:
        """{"healthy": bool, "runtime": "available"|"unavailable: ...", "checks": {...}}"""

    def metrics(self) -> str:
        """Prometheus text exposition."""

    async def enroll(self, bundle: str) -> dict[str, Any]:
        """Enroll the site with control and start syncing: {"site", "control"}. Raises
        Conflict (enrolled already) or `enforcer.link.enrollment.EnrollmentError`."""
