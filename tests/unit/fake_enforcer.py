"""An in-memory `enforcer.facade.Enforcer` for the API and CLI tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from enforcer.facade import (
    AppRecord,
    AppSource,
    Conflict,
    ContainerStatus,
    Event,
    InstanceState,
    InstanceStatus,
    Invalid,
    NotFound,
)

INVALID_SPEC_MESSAGE = (
    'services[0].replicas: "many" is not a whole number\n'
    'services[0].containers[1].probes.liveness.period: "10x" is not a duration'
)


def instance(
    id: str,
    state: InstanceState = InstanceState.RUNNING,
    *,
    reason: str = "",
    restarts: int = 0,
    last_exit_code: int | None = None,
    next_retry: float | None = None,
) -> InstanceStatus:
    app, service, _ = id.split(".")
    return InstanceStatus(
        id=id,
        app=app,
        service=service,
        tenant="system",
        host="host-a",
        version="1.0",
        state=state,
        ready=state is InstanceState.RUNNING,
        restarts=restarts,
        reason=reason,
        last_exit_code=last_exit_code,
        next_retry=next_retry,
        containers=(ContainerStatus(name="main", state="running", restarts=restarts),),
    )


class FakeEnforcer:
    """Applications in a dict; a spec with ``invalid: true`` fails validation; names in
    `control_owned` conflict. Logs and events can be fed while a client follows them."""

    def __init__(self) -> None:
        self.apps: dict[str, AppRecord] = {}
        self.control_owned: set[str] = set()
        self.removed: list[tuple[str, bool]] = []
        self.instance_list: list[InstanceStatus] = []
        self.log_chunks: dict[tuple[str, str], list[bytes]] = {}
        self.log_feed: asyncio.Queue[bytes] | None = None
        self.log_followers = 0
        self.event_list: list[Event] = []
        self.event_followers = 0
        self._wakeup: asyncio.Event | None = None
        self.healthy = True
        self.enrolled_bundles: list[str] = []
        self.host_error: Exception | None = None
        self.host_record: dict[str, Any] = {
            "id": "host-a",
            "labels": {"zone": "line-1"},
            "cpus": 8,
            "memory": 16 << 30,
            "devices": {
                "devices": [
                    {"node": "/dev/video0", "subsystem": "video4linux", "labels": ["camera"]},
                    {"node": "/dev/ttyACM0", "subsystem": "tty", "labels": ["serial-gps"]},
                ],
                "gpus": [
                    {
                        "index": 0,
                        "vendor": "NVIDIA Corporation",
                        "model": "GA102GL [A10]",
                        "memory": 24 << 30,
                        "nodes": ["/dev/nvidia0"],
                    }
                ],
                "labels": ["camera", "serial-gps"],
            },
        }

    # --- applications -------------------------------------------------------------------------

    async def apply(self, document: Mapping[str, Any]) -> tuple[AppRecord, bool]:
        await asyncio.sleep(0)
        if document.get("invalid"):
            raise Invalid(INVALID_SPEC_MESSAGE)
        name = str(document["name"])
        if name in self.control_owned:
            raise Conflict(f'application "{name}" is managed by control')
        old = self.apps.get(name)
        if old is not None and dict(old.document) == dict(document):
            return old, False
        record = AppRecord(
            name=name,
            version=str(document.get("version", "")),
            tenant="system",
            source=AppSource.LOCAL,
            document=dict(document),
            updated=time.time(),
        )
        self.apps[name] = record
        self.emit("app.applied", f"application {name} applied", app=name)
        return record, True

    async def remove(self, name: str, purge: bool = False) -> None:
        if name not in self.apps:
            raise NotFound(f'no application "{name}"')
        del self.apps[name]
        self.removed.append((name, purge))

    def applications(self) -> list[AppRecord]:
        return list(self.apps.values())

    def application(self, name: str) -> AppRecord:
        try:
            return self.apps[name]
        except KeyError:
            raise NotFound(f'no application "{name}"') from None

    # --- instances, logs, events --------------------------------------------------------------

    def instances(self) -> list[InstanceStatus]:
        return list(self.instance_list)

    def logs(
        self, instance: str, container: str | None, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        return self._logs(instance, container or "main", tail, follow)

    async def _logs(
        self, instance: str, container: str, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        if instance not in {i.id for i in self.instance_list}:
            raise NotFound(f'no instance "{instance}"')
        if (instance, container) not in self.log_chunks:
            raise NotFound(f'instance "{instance}" has no container "{container}"')
        chunks = self.log_chunks[(instance, container)]
        if tail is not None:
            chunks = chunks[len(chunks) - tail :] if tail else []
        for chunk in chunks:
            yield chunk
        if not follow:
            return
        if self.log_feed is None:
            self.log_feed = asyncio.Queue()
        self.log_followers += 1
        try:
            while True:
                yield await self.log_feed.get()
        finally:
            self.log_followers -= 1

    def emit(self, kind: str, message: str, **extra: Any) -> Event:
        event = Event(
            seq=len(self.event_list) + 1, time=time.time(), kind=kind, message=message, **extra
        )
        self.event_list.append(event)
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.set()
        return event

    def events(self, since: int, follow: bool) -> AsyncIterator[Event]:
        return self._events(since, follow)

    async def _events(self, since: int, follow: bool) -> AsyncIterator[Event]:
        sent = since
        if follow:
            self.event_followers += 1
        try:
            while True:
                if self._wakeup is None:
                    self._wakeup = asyncio.Event()
                wakeup = self._wakeup
                for event in list(self.event_list):
                    if event.seq > sent:
                        sent = event.seq
                        yield event
                if not follow:
                    return
                await wakeup.wait()
        finally:
            if follow:
                self.event_followers -= 1

    # --- host, site, health -------------------------------------------------------------------

    def host(self) -> dict[str, Any]:
        if self.host_error is not None:
            raise self.host_error
        return self.host_record

    async def site(self) -> dict[str, Any]:
        return {
            "name": "store-042",
            "labels": {"customer": "acme", "system/name": "store-042"},
            "hosts": [
                {
                    "id": "host-a",
                    "address": "host-a.local",
                    "role": "controller",
                    "state": "alive",
                    "lease-age": 1.5,
                }
            ],
            "leader": "host-a",
            "store": {"kind": "sqlite", "path": "/x/enforcer.db", "state": "ok", "error": ""},
            "control": {
                "enrolled": False,
                "state": "not enrolled",
                "description": "not enrolled (site-local)",
            },
        }

    async def health(self) -> dict[str, Any]:
        runtime = "available" if self.healthy else "unavailable: cannot connect to Docker"
        return {"healthy": self.healthy, "runtime": runtime, "checks": {"runtime": runtime}}

    def metrics(self) -> str:
        return "# TYPE edgeward_instances gauge\nedgeward_instances 2\n"

    async def enroll(self, bundle: str) -> dict[str, Any]:
        from enforcer.link.enrollment import EnrollmentError

        if self.enrolled_bundles:
            raise Conflict("this site is enrolled already, as store-042 with control at https://c")
        if bundle == "expired":
            raise EnrollmentError("control refused: the bundle has expired")
        self.enrolled_bundles.append(bundle)
        return {"site": "store-042", "control": "https://c"}
