"""This host's part in a multi-host site (DESIGN.md, "Site, hosts and the scheduler").

`Coordinator` registers the host under a lease, follows the site's state in the store (hosts,
applications, assignments; `enforcer.site.cluster.records`), stands for leadership and, while
it leads, places the site's instances on the live hosts (`enforcer.site.cluster.placement`).
Every host runs its own engine to `mine()`: the instances assigned to it.

Fencing: a host whose registration has not been renewed for two thirds of its lease TTL (the
store cannot be reached) is *fenced*: `mine()` drops its instances of replicated services, so
they are stopped before its lease must have expired; the leader places them elsewhere only
`grace` (a third of the TTL) after the lease expired in the store. A fenced host that registers
again reads the assignments afresh before it runs anything, so it adopts what is still its own
and removes what moved. With the store's quorum lost nothing can move, and nothing is fenced
(`enforcer.site.cluster.quorum` tells the two apart).

A (re)started host leaves its engine as it is until it has registered and read the
assignments (`RESTART_HOLD`: how long a stopped enforcer's host stays in the site).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from enforcer.facade import AppRecord
from enforcer.shared.spec.model import Application, Mode
from enforcer.site.cluster import records as keys
from enforcer.site.cluster.leading import lead
from enforcer.site.cluster.quorum import QuorumProbe, QuorumWatch
from enforcer.site.cluster.records import (
    Assignments,
    InvalidRecord,
    app_from_json,
    app_to_json,
)
from enforcer.site.cluster.retake import revoke_if_ours, take_back
from enforcer.site.cluster.statuses import SiteStatuses
from enforcer.site.cluster.view import site_hosts
from enforcer.site.kv.base import Compacted, Entry, Event, EventKind, KVError, SiteKV
from enforcer.site.kv.election import Election
from enforcer.site.kv.registry import DuplicateHost, HostRecord, InvalidHostRecord, Registration

__all__ = ["Coordinator"]

log = logging.getLogger(__name__)

RESTART_HOLD = 5  # lease TTLs a stopped enforcer's host stays in the site (its containers run)


class Coordinator:
    def __init__(
        self,
        kv: SiteKV,
        record: HostRecord,
        *,
        ttl: float,
        on_change: Callable[[], Awaitable[None]],
        statuses: Callable[[], list[dict[str, Any]]] = list,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kv = kv
        self.host = record.id
        self.ttl = ttl
        self.grace = ttl / 3  # after a lease expired in the store, before its work moves
        self.fence_lead = ttl / 3  # a host fences this long before its lease must expire
        self.clock = clock
        self.on_change = on_change
        self.registration = Registration(kv, record, prefix=keys.HOSTS, ttl=ttl, clock=clock)
        self.election = Election(kv, self.host, prefix=keys.ELECTION, ttl=ttl, clock=clock)
        self.hosts: dict[str, HostRecord] = {}
        self.apps: dict[str, AppRecord] = {}
        self.shared: dict[str, tuple[bytes, int]] = {}  # control's vaults, quotas; revision
        self.assignments: Assignments | None = None  # None: not read yet
        self.assignments_revision = 0  # its key's mod_revision; 0: absent
        self.gone_at: dict[str, float] = {}  # hosts seen to go (local clock)
        self.fenced = True  # until registered and the assignments are read
        self.settled = False  # unfenced once; until then a (re)started host leaves its engine be
        self.leading = False
        self.leaving = False  # `site leave`: it runs nothing more, its instances move
        self._dirty = asyncio.Event()  # something changed for this host's engine
        self.leader_dirty = asyncio.Event()  # something changed for the leader's decision
        self._tasks: list[asyncio.Task[None]] = []
        self.status = SiteStatuses(self.host, statuses)
        self.quorum = QuorumWatch(QuorumProbe.of(kv), ttl, clock)
        self._own_lease = 0  # the lease this host last registered under
        self.leading_changed = asyncio.Event()  # set when `leading` flips

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start following the site; registering (and leading) go on in the background."""
        for name, coro in (
            ("cluster-register", self._register()),
            ("cluster-follow", self._follow()),
            ("cluster-fence", self._fence()),
            ("cluster-notify", self._notify()),
            ("cluster-lead", lead(self)),
            ("cluster-status", self.status.publish_forever(self.kv, self.registration)),
        ):
            self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self, *, leave: bool = False) -> None:
        """Step down as leader at once; keep the host in the site for RESTART_HOLD lease TTLs
        (its containers keep running, so its instances stay put: a restart within that time
        takes the registration back and restarts nothing), or not at all (`leave`: its
        registration goes now); close the store."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        with contextlib.suppress(KVError):
            await self.election.resign()
        if self.registration.registered.is_set() and not leave:
            with contextlib.suppress(KVError):  # its key onto a longer lease, never deleted
                hold = await self.kv.grant(self.ttl * RESTART_HOLD)
                await self.kv.put(
                    self.registration.key, self.registration.record.to_json(), hold.id
                )
        with contextlib.suppress(KVError):
            await self.registration.deregister(revoke=leave)
        await self.kv.close()

    def set_leaving(self, leaving: bool) -> None:
        """`site leave`: run nothing more and let the leader move this host's instances."""
        self.leaving = leaving
        self._dirty.set()
        self.set_record(self.registration.record)

    # -- what this host runs -------------------------------------------------------------
    def mine(self, apps: Mapping[str, Application]) -> frozenset[str] | None:
        """The instances this host's engine should run; None while that is not known (leave
        the engine as it is). Fenced: only its one-per-matching-host instances."""
        if self.assignments is None or not self.settled:
            return None
        if self.leaving:
            return frozenset()
        ids = self.assignments.on_host(self.host)
        if self.fenced:
            local = {
                f"{app.name}.{svc.name}.{self.host}"
                for app in apps.values()
                for svc in app.services
                if svc.mode is Mode.ONE_PER_MATCHING_HOST
            }
            ids = ids & local
        return ids

    def set_record(self, record: HostRecord) -> None:
        """This host's record changed (its devices, labels): publish it in the background."""
        record = dataclasses.replace(record, leaving=self.leaving)
        if record != self.registration.record:
            task = asyncio.create_task(self._publish_record(record), name="cluster-record")
            self._tasks.append(task)
            task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    async def _publish_record(self, record: HostRecord) -> None:
        try:  # not registered: the next registration carries it
            await self.registration.update(record)
            log.info("host %s: its record is published again", self.host)
        except KVError as exc:
            log.warning("host %s cannot publish its changed record: %s", self.host, exc)

    # -- applications --------------------------------------------------------------------
    async def put_app(self, rec: AppRecord) -> None:
        await self.kv.put(keys.APPS + rec.name, app_to_json(rec))

    async def delete_app(self, name: str) -> None:
        await self.kv.delete(keys.APPS + name)

    async def seed_apps(self, recs: list[AppRecord]) -> None:
        """This host's applications that the site does not have yet (a host's first start)."""
        for rec in recs:
            await self.kv.create(keys.APPS + rec.name, app_to_json(rec))

    # -- registration and fencing ----------------------------------------------------------
    async def _register(self) -> None:
        while True:
            try:
                try:
                    await self.registration.register()
                except DuplicateHost:
                    if not await take_back(self.kv, self.registration):
                        raise
                    await self.registration.register()
                return
            except KVError as exc:  # a twin, the old key not expired yet, or no store
                log.warning("host %s cannot register yet: %s", self.host, exc)
            await asyncio.sleep(self.ttl / 3)

    def _cut_off(self) -> bool:
        lease = self.registration.lease
        if not self.registration.registered.is_set() or lease.lost.is_set():
            return True
        return self.clock() >= lease.must_have_expired_at - self.fence_lead

    async def _fence(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            if self.registration.registered.is_set():
                self._own_lease = self.registration.lease.id
            cut = self._cut_off()
            if cut and await self._quorum_lost():
                continue  # nobody can move anything: change nothing
            if not cut:
                self.quorum.back()
            if cut and self.quorum.holding():
                continue  # back from a lost quorum: its registration is being taken back
            if cut and not self.fenced:
                log.warning("host %s is cut off from the site store: fencing", self.host)
                self.fenced = True
                self._dirty.set()
            elif not cut and self.fenced:
                try:  # what is ours now, read after registering: nothing stale restarts
                    entry = await self.kv.get(keys.ASSIGNMENTS)
                except KVError:
                    continue
                self._set_assignments(entry)
                log.info("host %s is registered: running its assignments", self.host)
                self.fenced = False
                self.settled = True
                self._dirty.set()

    async def _quorum_lost(self) -> bool:
        """Whether the store's quorum is lost; when it has just come back, this host's old
        registration (its lease outlived the loss) is revoked, so that it registers at once."""
        was = self.quorum.lost_since is not None
        try:
            lost = await self.quorum.lost()
        except Exception as exc:  # a probe that fails says nothing
            log.debug("cannot probe the site store: %s", exc)
            return False
        if was and not lost and not self.registration.registered.is_set() and self._own_lease:
            with contextlib.suppress(KVError):
                await revoke_if_ours(self.kv, self.registration, self._own_lease)
        return lost

    def _went(self, host: str) -> float:
        """When `host` counts as gone: now, or two TTLs on just after a lost quorum came back
        (every host re-registers then)."""
        return self.clock() + (2 * self.ttl if self.quorum.recently_back() else 0.0)

    async def _notify(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.on_change()
            except Exception:
                log.exception("applying the site's state on host %s failed", self.host)

    # -- following the store -------------------------------------------------------------
    def _set_assignments(self, entry: Entry | None) -> None:
        """None there (no leader decided yet) is None, not "nothing": a host's running
        containers are left be until the leader has placed them (else they would restart)."""
        self.assignments_revision = entry.mod_revision if entry else 0
        try:
            self.assignments = Assignments.from_json(entry.value) if entry else None
        except InvalidRecord as exc:
            log.error("%s", exc)

    def _load(self, entries: list[Entry]) -> None:
        before = set(self.hosts)
        self.hosts.clear()
        self.apps.clear()
        self.shared.clear()
        self.status.load(entries)
        assignments = None
        for entry in entries:
            self._put(entry.key, entry.value, entry.mod_revision)
            if entry.key == keys.ASSIGNMENTS:
                assignments = entry
        self._set_assignments(assignments)
        for host in before - set(self.hosts):
            self.gone_at.setdefault(host, self._went(host))
        if self.assignments is not None:
            for host in set(self.assignments.instances.values()) - set(self.hosts):
                self.gone_at.setdefault(host, self._went(host))

    def _put(self, key: str, value: bytes, revision: int) -> None:
        try:
            if key.startswith(keys.HOSTS):
                self.hosts[key[len(keys.HOSTS) :]] = HostRecord.from_json(value)
                self.gone_at.pop(key[len(keys.HOSTS) :], None)
            elif key.startswith(keys.APPS):
                self.apps[key[len(keys.APPS) :]] = app_from_json(key, value)
            elif key in keys.SHARED:
                self.shared[key] = (value, revision)
        except (InvalidRecord, InvalidHostRecord) as exc:
            log.error("site store: %s: %s", key, exc)

    def _apply(self, event: Event) -> None:
        if event.key == keys.ASSIGNMENTS:
            if event.kind is EventKind.PUT:
                self._set_assignments(Entry(event.key, event.value, 0, event.revision, 1))
            else:
                self._set_assignments(None)
        elif event.kind is EventKind.PUT:
            self._put(event.key, event.value, event.revision)
        elif event.key.startswith(keys.HOSTS):
            host = event.key[len(keys.HOSTS) :]
            record = self.hosts.pop(host, None)
            if record is not None and record.leaving:  # `site leave`: gone, not dead
                log.info("host %s left the site", host)
            elif record is not None:
                self.gone_at[host] = self._went(host)
                log.warning("host %s left the site (its lease expired or was revoked)", host)
        elif event.key.startswith(keys.APPS):
            self.apps.pop(event.key[len(keys.APPS) :], None)
        else:
            self.shared.pop(event.key, None)

    async def _follow(self) -> None:
        while True:
            try:
                entries, revision = await self.kv.range(keys.ROOT)
                self._load(entries)
                self._dirty.set()
                self.leader_dirty.set()
                async with contextlib.aclosing(self.kv.watch(keys.ROOT, revision + 1)) as events:
                    async for event in events:
                        if event.key.startswith((keys.EVENTS, keys.LOGS)):
                            continue  # the leader's link forwards them; logs: `logrelay`
                        if event.key.startswith(keys.STATUS):
                            self.status.apply(event)  # a move may wait on it
                            self.leader_dirty.set()
                            continue
                        self._apply(event)
                        if not event.key.startswith(keys.ELECTION):
                            self._dirty.set()
                            self.leader_dirty.set()
            except Compacted:
                log.info("site store watch compacted: listing again")
            except KVError as exc:
                log.warning("host %s cannot follow the site store: %s", self.host, exc)
                await asyncio.sleep(self.ttl / 3)

    # -- leading (`enforcer.site.cluster.leading`) ------------------------------------------
    def set_leading(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            self.leading_changed.set()

    @property
    def leader(self) -> str:
        """The host that last wrote the assignments (the leader, as this host knows it)."""
        return self.assignments.leader if self.assignments else ""

    # -- the site view -------------------------------------------------------------------
    async def view(self) -> tuple[list[dict[str, Any]], str | None]:
        """The hosts as `GET /v1/site` shows them, and the leader's id. Raises KVError."""
        return await site_hosts(self)
