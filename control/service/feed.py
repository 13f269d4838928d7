"""Several control processes on one database: following what the others change, and leading.

Every write to a shared (PostgreSQL) store also records which records changed, in the same
transaction. `Follower` reads those changes in commit order — woken by the store's notifications,
and every `POLL_SECONDS` in case one was lost — reloads the records they name and recomputes the
desired state, so a change made through any process answers the long-polls held by all of them.
After its listener reconnects it reloads everything. Leadership (`Store.leadership`) decides
which process runs the loops that must run once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from control.service.core import Core
from control.store.base import (
    CHANGE_APP,
    CHANGE_DEPLOYMENT,
    CHANGE_SITE,
    CHANGE_STATUS,
    ChangeFeed,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # the fallback when a notification is lost
BATCH = 5000
KEEP_CHANGES_SECONDS = 3600.0
TRIM_SECONDS = 60.0

Reload = Callable[[], Awaitable[None]]
Notice = Callable[[set[str]], None]  # told the names of changed records of one kind


class Follower:
    """Keeps this process's fleet in step with the changes recorded in `feed`."""

    def __init__(
        self,
        core: Core,
        feed: ChangeFeed,
        reloads: Mapping[str, Reload],
        notices: Mapping[str, Notice] | None = None,
    ) -> None:
        self.core = core
        self.feed = feed
        self.reloads = reloads  # per kind of record (not sites): reload all of that kind
        self.notices = notices or {}  # per kind of change that is news, not a record to reload
        self.position = 0
        self._wake = asyncio.Event()
        self._everything = False

    async def start(self) -> None:
        """Take the feed's position; call before loading what the feed will then keep fresh."""
        self.position = await self.feed.latest()

    def wake(self, reconnected: bool) -> None:
        self._everything |= reconnected
        self._wake.set()

    async def run(self) -> None:
        listener = asyncio.create_task(self.feed.listen(self.wake), name="control-feed-listen")
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
                self._wake.clear()
                try:
                    await self.catch_up()
                except StoreUnavailable as e:
                    log.warning("following the other control processes: %s", e)
                except Exception:
                    log.exception("following the other control processes failed; trying again")
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def catch_up(self) -> None:
        """Apply every change after our position (all records after a reconnection); the
        position moves only once they are applied, so a failure loses nothing."""
        everything, self._everything = self._everything, False
        try:
            kinds: set[str] = set(self.reloads) if everything else set()
            sites: set[str] = set()
            news: dict[str, set[str]] = {}
            position = self.position
            while True:
                changes = await self.feed.since(position, BATCH)
                for position, kind, name in changes:  # noqa: B007 (the last one is kept)
                    if kind in self.notices:
                        news.setdefault(kind, set()).add(name)
                    elif kind in (CHANGE_SITE, CHANGE_STATUS):
                        sites.add(name)
                    elif kind in self.reloads:
                        kinds.add(kind)
                if len(changes) < BATCH:
                    break
            if everything:
                stored = await self.core.store.sites.load()
                sites = set(self.core.fleet.sites) | {s.name for s in stored}
            if kinds or sites:
                await self.apply(kinds, sites)
            for kind, names in news.items():
                self.notices[kind](names)
        except BaseException:
            self._everything |= everything
            raise
        self.position = position

    async def apply(self, kinds: set[str], sites: set[str]) -> None:
        core = self.core
        async with core.lock:
            for kind in sorted(kinds):
                await self.reloads[kind]()
            if sites:
                await core.reload_sites(sorted(sites))
            # what the others changed may change desired states here too: the same computation
            # gives the same digests, so normally nothing is new
            await core.recompute(None if kinds else sorted(sites & set(core.fleet.sites)))
        if kinds & {CHANGE_DEPLOYMENT, CHANGE_APP} or sites:
            core.rollout_wakeup.set()

    async def trim_forever(self) -> None:
        """On the leader: forget changes every process has had ample time to read."""
        while True:
            await asyncio.sleep(TRIM_SECONDS)
            if not self.core.leads():
                continue
            try:
                gone = await self.feed.trim(self.core.clock() - KEEP_CHANGES_SECONDS)
                if gone:
                    log.debug("trimmed %d old changes", gone)
            except StoreUnavailable as e:
                log.warning("trimming the change feed: %s", e)
