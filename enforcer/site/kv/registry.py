"""The site's hosts: each registers a record under a lease it keeps alive; a live host is one
whose key exists. Built only on `SiteKV`: the same on SQLite and etcd.

A host's key is `<prefix><host id>`, created only if absent, so two live hosts can never hold
the same id (the second is told which address holds it). When a host's lease is lost (it was
cut off longer than its TTL, or paused), its key is gone and it registers again as soon as the
store lets it. `live_hosts` lists them; `watch_hosts` follows the list as it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from enforcer.schedule.hosts import HostState
from enforcer.site.kv.base import Compacted, Entry, KVError, SiteKV
from enforcer.site.kv.lease import KeptLease

__all__ = [
    "DEFAULT_PREFIX",
    "ROLES",
    "DuplicateHost",
    "HostRecord",
    "InvalidHostRecord",
    "LiveHost",
    "Registration",
    "live_hosts",
    "watch_hosts",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/site/hosts/"
ROLES = ("controller", "worker")


class DuplicateHost(KVError):
    """Another live host is registered under this host's id."""


class InvalidHostRecord(ValueError):
    """A host record is malformed; str() names the field."""


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidHostRecord(f"{name} must be a list of strings, not {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class HostRecord:
    """What a host tells the site about itself: what the scheduler needs, and its images."""

    id: str
    address: str
    role: str = "controller"  # controller (a site-store member runs here) | worker
    labels: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs, system labels too
    device_labels: tuple[str, ...] = ()  # labels of the devices present
    defined_device_labels: tuple[str, ...] = ()  # labels its device rules can give
    gpu_ids: tuple[str, ...] = ()
    cpus: float = 0.0
    memory: int = 0  # bytes
    images: tuple[str, ...] = ()  # image references present in its engine
    leaving: bool = False  # `edge-enforcer site leave`: its instances move off it

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or "/" in self.id:
            raise InvalidHostRecord(f"host id must be non-empty text without '/', not {self.id!r}")
        if not isinstance(self.address, str) or not self.address:
            raise InvalidHostRecord(f"host {self.id}: address must be non-empty text")
        if self.role not in ROLES:
            raise InvalidHostRecord(
                f"host {self.id}: role must be controller or worker, not {self.role!r}"
            )
        if not (isinstance(self.cpus, int | float) and math.isfinite(self.cpus) and self.cpus >= 0):
            raise InvalidHostRecord(
                f"host {self.id}: cpus must be a number >= 0, not {self.cpus!r}"
            )
        if not isinstance(self.memory, int) or self.memory < 0:
            raise InvalidHostRecord(
                f"host {self.id}: memory must be a whole number of bytes >= 0, not {self.memory!r}"
            )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "address": self.address,
                "role": self.role,
                "labels": dict(self.labels),
                "device-labels": list(self.device_labels),
                "defined-device-labels": list(self.defined_device_labels),
                "gpu-ids": list(self.gpu_ids),
                "cpus": self.cpus,
                "memory": self.memory,
                "images": list(self.images),
                "leaving": self.leaving,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> HostRecord:
        """The record; InvalidHostRecord naming what is wrong."""
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidHostRecord(f"a host record is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise InvalidHostRecord("a host record must be a JSON object")
        labels = raw.get("labels", {})
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise InvalidHostRecord(f"labels must map text to text, not {labels!r}")
        return cls(
            id=raw.get("id", ""),
            address=raw.get("address", ""),
            role=raw.get("role", ""),
            labels=tuple(sorted(labels.items())),
            device_labels=_strings("device-labels", raw.get("device-labels", [])),
            defined_device_labels=_strings(
                "defined-device-labels", raw.get("defined-device-labels", [])
            ),
            gpu_ids=_strings("gpu-ids", raw.get("gpu-ids", [])),
            cpus=raw.get("cpus", 0.0),
            memory=raw.get("memory", 0),
            images=_strings("images", raw.get("images", [])),
            leaving=raw.get("leaving") is True,
        )

    def host_state(self) -> HostState:
        """The host as the scheduler sees it."""
        return HostState(
            id=self.id,
            labels=self.labels,
            device_labels=frozenset(self.device_labels),
            gpus=len(self.gpu_ids),
            cpus=float(self.cpus),
            memory=self.memory,
            defined_device_labels=frozenset(self.defined_device_labels),
            gpu_ids=self.gpu_ids,
        )


@dataclass(frozen=True)
class LiveHost:
    record: HostRecord
    lease: int | None
    revision: int  # the create_revision of its key: when it (last) registered
    mod_revision: int = field(default=0, compare=False)


def _live(entries: list[Entry]) -> list[LiveHost]:
    hosts = []
    for entry in entries:
        try:
            record = HostRecord.from_json(entry.value)
        except InvalidHostRecord as exc:
            log.error("site store: host record %s is unreadable: %s", entry.key, exc)
            continue
        hosts.append(LiveHost(record, entry.lease, entry.create_revision, entry.mod_revision))
    return hosts


async def live_hosts(kv: SiteKV, prefix: str = DEFAULT_PREFIX) -> list[LiveHost]:
    """The hosts whose registration is alive now, by id."""
    entries, _ = await kv.range(prefix)
    return _live(entries)


async def watch_hosts(kv: SiteKV, prefix: str = DEFAULT_PREFIX) -> AsyncIterator[list[LiveHost]]:
    """The live hosts now, then again after every change, without end."""
    while True:
        entries, revision = await kv.range(prefix)
        yield _live(entries)
        try:
            async with contextlib.aclosing(kv.watch(prefix, revision + 1)) as events:
                async for _ in events:
                    yield await live_hosts(kv, prefix)
        except Compacted:
            log.info("host watch on %s compacted: listing again", prefix)


class Registration:
    """This host's registration (see the module documentation)."""

    def __init__(
        self,
        kv: SiteKV,
        record: HostRecord,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: float = 3.0,
        keep_interval: float | None = None,
        retry_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kv = kv
        self.record = record
        self.key = f"{prefix}{record.id}"
        self.lease = KeptLease(
            kv, ttl, interval=keep_interval, clock=clock, name=f"host {record.id}"
        )
        self.retry_interval = retry_interval if retry_interval is not None else ttl / 3
        self.registered = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None

    async def register(self) -> None:
        """Register and keep the registration alive (re-registering after a lost lease).
        Raises DuplicateHost when a live host holds this id, KVError when the store fails."""
        await self._register()
        self._watchdog = asyncio.create_task(self._reregister(), name=f"{self.key} watchdog")

    async def _register(self) -> None:
        lease = await self.lease.start()
        if await self.kv.create(self.key, self.record.to_json(), lease.id) is None:
            await self.lease.stop(revoke=True)
            holder = await self.kv.get(self.key)
            address = HostRecord.from_json(holder.value).address if holder else "?"
            raise DuplicateHost(
                f"host id {self.record.id} is already registered by a live host at {address}:"
                " give each host its own [host] id"
            )
        self.registered.set()
        log.info("host %s registered (lease %x)", self.record.id, lease.id)

    async def _reregister(self) -> None:
        while True:
            await self.lease.lost.wait()
            self.registered.clear()
            log.warning("host %s: registration lost; registering again", self.record.id)
            while not self.registered.is_set():
                try:
                    await self._register()
                except DuplicateHost as exc:  # the old key has not expired yet, or a twin
                    log.error("%s", exc)
                except KVError as exc:
                    log.warning("host %s cannot register: %s", self.record.id, exc)
                if not self.registered.is_set():
                    await asyncio.sleep(self.retry_interval)

    async def update(self, record: HostRecord) -> None:
        """Publish a changed record (labels, devices, images) under the same lease."""
        if record.id != self.record.id:
            raise ValueError(f"a registration of {self.record.id} cannot publish {record.id}")
        self.record = record
        if self.registered.is_set():
            await self.kv.put(self.key, record.to_json(), lease=self.lease.id)

    async def deregister(self, *, revoke: bool = True) -> None:
        """Stop renewing and leave the site: now (`revoke`), or when the lease expires."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        self.registered.clear()
        await self.lease.stop(revoke=revoke)  # its key goes with it (only ours: a twin's stays)
