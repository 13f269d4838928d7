"""What control's operations share: the store, the in-memory fleet, the clock, the metrics,
and the one lock under which the desired state changes.

Every change (a push, a deployment, a relabel, a rollout step) recomputes the desired state of
the sites it may touch; a site whose set of (application, version) changed gets a new revision
and its waiting long-poll is woken, so an idle site costs nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from control.fleet.state import DeploymentState, Fleet
from control.model import Site, copy_site
from control.store.base import Store


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
        self.lock = asyncio.Lock()  # serialises changes to the desired state
        self.rollout_wakeup = asyncio.Event()

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

    async def change_site(self, name: str, **changes: Any) -> Site:
        """Store a changed copy of a site, then recompute its desired state."""
        async with self.lock:
            updated = copy_site(self.fleet.sites[name], **changes)
            await self.store.sites.save(updated)
            self.fleet.sites[name] = updated
            await self.recompute([name])
        self.rollout_wakeup.set()
        return updated
