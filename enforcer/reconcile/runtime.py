"""The container runtime as the worker and the reconciler see it: a small Protocol.

`enforcer.runtime.docker.DockerRuntime` is its one real implementation; the daemon wires it
in. Nothing in `enforcer.reconcile` imports the adapter, so the decisions and the loops that
carry them out never depend on the docker SDK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from enforcer.reconcile.instances import ContainerConfig
from enforcer.shared.spec.model import Probe


class RuntimeUnavailable(Exception):
    """The engine cannot be reached."""


class RuntimeRequestError(Exception):
    """The engine answered, but refused the request; str() is its explanation."""


class ImageNotFound(RuntimeRequestError):
    pass


class PullStalled(RuntimeRequestError):
    """An image pull made no progress for too long, or ran past its time limit."""


@dataclass(frozen=True)
class ObservedContainer:
    id: str
    name: str
    labels: dict[str, str]
    state: str  # created | running | paused | restarting | removing | exited | dead

    @property
    def instance(self) -> str:
        return self.labels.get("edgeward.instance", "")

    @property
    def container(self) -> str:
        return self.labels.get("edgeward.container", "")

    @property
    def config_hash(self) -> str:
        return self.labels.get("edgeward.spec-hash", "")


@dataclass(frozen=True)
class ContainerDetails:
    id: str
    state: str
    running: bool
    exit_code: int | None
    started_at: str
    finished_at: str
    oom_killed: bool
    error: str
    ip: str  # on the instance's network ('' for followers)
    pid: int

    @property
    def ran_for(self) -> float:
        """Seconds between its last start and its exit (0 when either is unknown)."""
        finished, started = parse_time(self.finished_at), parse_time(self.started_at)
        return finished - started if finished and started else 0.0


def parse_time(text: str) -> float:
    """RFC 3339 timestamps with nanoseconds -> unix time (0 for the zero time)."""
    if not text or text.startswith("0001-"):
        return 0.0
    head, _, rest = text.partition(".")
    frac = "".join(ch for ch in rest if ch.isdigit())[:6]
    tz = "+00:00" if text.endswith("Z") else rest[len(rest.rstrip("+-:0123456789")) :]
    stamp = f"{head}.{frac or '0'}{tz if tz.startswith(('+', '-')) else '+00:00'}"
    return datetime.fromisoformat(stamp).timestamp()


class Runtime(Protocol):
    """What reconciling needs from the machine's container engine."""

    async def ping(self) -> bool: ...

    async def list_managed(self, **label_filters: str) -> list[ObservedContainer]: ...

    async def details(self, container_id: str, network: str = "") -> ContainerDetails: ...

    async def create(self, cfg: ContainerConfig, image_id: str, owner_id: str | None) -> str: ...

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, timeout: float | None = None) -> None: ...

    async def remove(self, container_id: str) -> None: ...

    async def probe(self, container_id: str, ip: str, probe: Probe) -> bool | None:
        """One probe attempt: True passed, False failed, None unknown (engine unreachable)."""
        ...

    async def image_id(self, ref: str) -> str | None: ...

    async def pull(self, ref: str) -> str:
        """Pull `ref`, its local image id; `PullStalled` when it stops making progress."""
        ...

    async def ensure_network(
        self, name: str, bridge: str, labels: dict[str, str], subnet: str = ""
    ) -> str: ...

    async def managed_networks(self) -> list[dict[str, Any]]: ...

    async def remove_network(self, name: str) -> None: ...

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None: ...

    async def managed_volumes(self, **label_filters: str) -> list[str]: ...

    async def remove_volume(self, name: str) -> None: ...

    def events(self) -> AsyncIterator[dict[str, Any]]: ...


class OutboundPolicy(Protocol):
    """The outbound firewall of application networks (`enforcer.network.firewall`)."""

    async def apply(self, bridges: Mapping[str, frozenset[str]]) -> None:
        """Bridge name -> the addresses allowed out; everything else on it is denied."""
        ...

    async def verify(self) -> None:
        """Put the rules back where they vanished (a firewall reload, `iptables -F`)."""
        ...


class RestartStore(Protocol):
    """Where restart counts and crash-loop backoff outlive the enforcer (`enforcer.site`)."""

    async def restart_counts(self) -> dict[str, tuple[int, int | None]]: ...

    async def put_restart_count(
        self, container: str, restarts: int, last_exit: int | None
    ) -> None: ...

    async def forget_restarts(self, prefix: str) -> None: ...

    async def backoffs(self) -> dict[str, tuple[int, float | None, str]]: ...

    async def put_backoff(
        self, container: str, streak: int, next_retry: float | None, seen_exit: str
    ) -> None: ...

    async def forget_backoffs(self, prefix: str) -> None: ...
