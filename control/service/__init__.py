"""Control's operations, composed from parts that share one `Core` (store, fleet, lock).

`ControlService` is the wiring: it makes the parts, loads them in order and runs the two
background tasks (rollouts, contact times). The decisions live in `control.fleet`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from control.pki import Authority
from control.service.apps import Applications
from control.service.core import Core, Metrics
from control.service.deployments import Deployments
from control.service.enrollment import Enrollment
from control.service.sites import Sites
from control.service.sync import Sync
from control.service.tenants import Tenants
from control.service.vaults import Vaults
from control.store.base import Store
from control.vaults.envelope import MASTER_KEY_FILE, Envelope

__all__ = ["ControlService", "Metrics"]


class ControlService:
    def __init__(
        self,
        store: Store,
        authority: Authority,
        url: str,
        clock: Callable[[], float] = time.time,
        envelope: Envelope | None = None,
        master_key_path: Path = Path(MASTER_KEY_FILE),
    ) -> None:
        self.core = Core(store, clock)
        self.fleet = self.core.fleet
        self.metrics = self.core.metrics
        self.authority = authority
        # without a master key (tests): one for this process only
        self.vaults = Vaults(self.core, envelope or Envelope(os.urandom(32)), master_key_path)
        self.tenants = Tenants(self.core)
        self.sites = Sites(self.core)
        self.enrollment = Enrollment(self.core, authority, url)
        self.apps = Applications(self.core, self.vaults)
        self.deployments = Deployments(self.core)
        self.sync = Sync(self.core, self.vaults)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.tenants.load()
        await self.sites.load()
        await self.apps.load()
        await self.vaults.load()
        await self.deployments.load()
        async with self.core.lock:
            await self.core.recompute()
        self._tasks = [
            asyncio.create_task(self.sync.flush_contacts_forever(), name="control-contacts"),
            asyncio.create_task(self.deployments.run_rollouts(), name="control-rollouts"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            # Python 3.11's wait_for may swallow a cancellation that races its inner wait:
            # cancel again until the task is done
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sync.flush_contacts()
        self.fleet.desired.wake_all()
