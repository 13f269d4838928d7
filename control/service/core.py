"""What control's operations share: the store, the in-memory fleet, the clock, the metrics,
and the one lock under which the desired state changes.

Every change (a push, a deployment, a relabel, a rollout step) recomputes the desired state of
the sites it may touch; a site whose set of (application, version) changed gets a new revision
and its waiting long-poll is woken, so an idle site costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from control.fleet.state import DeploymentState, Fleet
from control.model import Conflict, Site, copy_site
from control.store.base import Store


class ChangeLock:
    """The lock under which the desired state changes; what the store does under it commits
    as one (`Store.batch`), so other control processes never see half of a change."""

    def __init__(self, store: Store) -> None:
        self._lock = asyncio.Lock()
        self._store = store
        self._batch: contextlib.AbstractAsyncContextManager[None] | None = None

    def locked(self) -> bool:
        return self._lock.locked()

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        batch = self._store.batch()
        try:
            await batch.__aenter__()
        except BaseException:
            self._lock.release()
            raise
        self._batch = batch

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: types.TracebackType | None,
    ) -> None:
        batch, self._batch = self._batch, None
        try:
            assert batch is not None
            await batch.__aexit__(kind, error, trace)
        finally:
            self._lock.release()


@dataclass
class Metrics:
    counters: dict[str, int] = field(default_factory=dict)

    def inc(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by


class Core:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.fleet = Fleet()
        self.metrics = Metrics()
        self.lock = ChangeLock(store)  # serialises changes to the desired state
        self.rollout_wakeup = asyncio.Event()
        self.stopping = False  # long-polls are answered at once: the process is going away
        self.owners: dict[tuple[str, str], str] = {}  # (kind, name) -> the Git source owning it

    async def recompute(self, names: Iterable[str] | None = None) -> None:
        """Give every site in `names` (default: all) whose desired state changed a new revision,
        and answer its waiting long-poll. Call under `lock`."""
        changes = self.fleet.recompute(names)
        if changes:
            # Answer the waiting sites first: should saving fail, the next start recomputes
            # the same digests and gives them the same revision numbers again.
            for name, _, _ in changes:
                self.fleet.desired.wake(name)
            self.metrics.inc("revisions_total", len(changes))
            await self.store.sites.save_revisions(changes)

    async def retarget(self, states: Iterable[DeploymentState], force: bool = False) -> None:
        """Start rollouts where a deployment's resolved version changed, then recompute.
        Call under `lock`."""
        changed = self.fleet.retarget(states, self.clock(), force)
        if changed:
            await self.store.deployments.save_rollouts(changed)
        await self.recompute()
        self.rollout_wakeup.set()

    def refuse_owned(self, kind: str, name: str) -> None:
        """Conflict when a Git source owns the record (kind: application, deployment, vault):
        it changes through Git only."""
        source = self.owners.get((kind, name))
        if source is not None:
            raise Conflict(
                f"{kind} {name} is owned by Git source {source}: change it in its repository "
                f"(or `edge-control git rm {source}` to manage it by hand)"
            )

    def leads(self) -> bool:
        """Whether this process runs the loops that must run once (always, on SQLite)."""
        leadership = self.store.leadership
        return leadership is None or leadership.held

    async def reload_sites(self, names: Iterable[str]) -> None:
        """Replace the sites in `names` with what the store holds (another control process
        changed them), answering the long-polls of those whose revision moved or whose
        certificate changed. Call under `lock`, then `recompute`."""
        names = list(names)
        loaded = {s.name: s for s in await self.store.sites.get(names)}
        for name in names:
            new, old = loaded.get(name), self.fleet.sites.get(name)
            if new is None:
                if old is not None:
                    del self.fleet.sites[name]
                    self.fleet.desired.wake(name)
                continue
            if old is not None and (old.last_contact or 0) > (new.last_contact or 0):
                new.last_contact = old.last_contact  # flushed to the store every few seconds
            self.fleet.sites[name] = new
            if old is None or (old.revision, old.digest, old.revoked, old.cert_serial) != (
                new.revision,
                new.digest,
                new.revoked,
                new.cert_serial,
            ):
                self.fleet.desired.wake(name)

    async def change_site(self, name: str, **changes: Any) -> Site:
        """Store a changed copy of a site, then recompute its desired state."""
        async with self.lock:
            updated = copy_site(self.fleet.sites[name], **changes)
            await self.store.sites.save(updated)
            self.fleet.sites[name] = updated
            await self.recompute([name])
        self.rollout_wakeup.set()
        return updated
