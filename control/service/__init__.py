"""Control's operations, composed from parts that share one `Core` (store, fleet, lock).

`ControlService` is the wiring: it makes the parts, loads them in order and runs the background
tasks (rollouts, contact times; on a shared PostgreSQL store also following the other control
processes and taking part in leadership, see `control.service.feed`). The decisions live in
`control.fleet`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from control.fleet.events import DEFAULT_KEEP_SECONDS
from control.pki import Authority
from control.service.apps import Applications
from control.service.core import Core, Metrics
from control.service.deployments import Deployments
from control.service.enrollment import Enrollment
from control.service.events import Events
from control.service.feed import Follower
from control.service.gitsources import GitSources
from control.service.logs import Logs
from control.service.sites import Sites
from control.service.sync import Sync
from control.service.tenants import Tenants
from control.service.vaults import Vaults
from control.store.base import (
    CHANGE_APP,
    CHANGE_DEPLOYMENT,
    CHANGE_GIT,
    CHANGE_LOG_REQUEST,
    CHANGE_TENANT,
    CHANGE_VAULT,
    Store,
    StoreUnavailable,
)
from control.vaults.envelope import MASTER_KEY_FILE, Envelope

__all__ = ["ControlService", "Metrics"]

log = logging.getLogger(__name__)


class ControlService:
    def __init__(
        self,
        store: Store,
        authority: Authority,
        url: str,
        clock: Callable[[], float] = time.time,
        envelope: Envelope | None = None,
        master_key_path: Path = Path(MASTER_KEY_FILE),
        events_keep: float = DEFAULT_KEEP_SECONDS,
        git_dir: Path | None = None,
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
        self.events = Events(self.core, self.sites, events_keep)
        self.logs = Logs(self.core, self.sites)
        # Git sources' bare repositories: state-dir/git
        self.git = GitSources(self.core, self.vaults, git_dir or master_key_path.parent / "git")
        self.follower: Follower | None = None
        if store.feed is not None:  # other control processes share the database
            reloads = {
                CHANGE_TENANT: self.tenants.load,
                CHANGE_APP: self.apps.load,
                CHANGE_DEPLOYMENT: self.deployments.load,
                CHANGE_VAULT: self.vaults.reload,
                CHANGE_GIT: self.git.reload,
            }
            notices = {CHANGE_LOG_REQUEST: self.logs.noticed}
            self.follower = Follower(self.core, store.feed, reloads, notices)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.follower is not None:
            await self.follower.start()  # before loading: no change falls in between
        await self.tenants.load()
        await self.sites.load()
        await self.apps.load()
        await self.vaults.load()
        await self.deployments.load()
        await self.git.load()
        async with self.core.lock:
            await self.core.recompute()
        self._tasks = [
            asyncio.create_task(self.sync.flush_contacts_forever(), name="control-contacts"),
            asyncio.create_task(self.deployments.run_rollouts(), name="control-rollouts"),
            asyncio.create_task(self.git.run(), name="control-git-sources"),
            asyncio.create_task(self.events.trim_forever(), name="control-events-trim"),
        ]
        if self.follower is not None:
            self._tasks.append(asyncio.create_task(self.follower.run(), name="control-follow"))
            self._tasks.append(
                asyncio.create_task(self.follower.trim_forever(), name="control-feed-trim")
            )
        leadership = self.core.store.leadership
        if leadership is not None:
            self._tasks.append(
                asyncio.create_task(leadership.run(self._leading), name="control-leadership")
            )

    def _leading(self, held: bool) -> None:
        log.info(
            "%s the loops that run once (rollouts, trimming the change feed)",
            "this process now runs" if held else "another control process runs",
        )
        if held:
            self.core.rollout_wakeup.set()
            self.git.wake()

    async def stop(self) -> None:
        self.core.stopping = True  # a site polling again now is answered at once
        self.events.arrived()  # and so is an operator following events
        for task in self._tasks:
            # Python 3.11's wait_for may swallow a cancellation that races its inner wait:
            # cancel again until the task is done
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.sync.flush_contacts()
        except StoreUnavailable as e:  # contact times are a hint: stopping goes on
            log.warning("saving last contact times at stop: %s", e)
        self.fleet.desired.wake_all()
