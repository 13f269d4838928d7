"""Following the other control processes (`control.service.feed.Follower`) over a fake change
feed and a real SQLite store: the polling fallback, waking long-polls, losing nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from control.model import Site
from control.service.core import Core
from control.service.feed import POLL_SECONDS, Follower
from control.store.base import CHANGE_SITE, Change, ChangeFeed, StoreUnavailable
from control.store.sqlite import SQLiteStore


class SilentFeed(ChangeFeed):
    """A feed whose notifications are all lost: only reading it finds the changes."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.fail_reads = 0

    async def latest(self) -> int:
        return self.changes[-1][0] if self.changes else 0

    async def since(self, after: int, limit: int) -> list[Change]:
        if self.fail_reads:
            self.fail_reads -= 1
            raise StoreUnavailable("the database cannot be reached now")
        return [c for c in self.changes if c[0] > after][:limit]

    async def listen(self, wake: Callable[[bool], None]) -> None:
        await asyncio.Event().wait()

    async def trim(self, before: float) -> int:
        return 0


def test_a_change_whose_notification_is_lost_still_wakes_the_long_poll_within_the_poll_period(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        store = SQLiteStore(tmp_path / "control.db")
        await store.open()
        feed = SilentFeed()
        core = Core(store)
        follower = Follower(core, feed, {})
        site = Site(name="s1", labels={}, created=1.0, enrolled=1.0)
        await store.sites.save(site)
        await follower.start()
        core.fleet.sites["s1"] = site
        async with core.lock:
            await core.recompute()
        task = asyncio.create_task(follower.run())
        try:
            waiting = asyncio.create_task(core.fleet.desired.wait("s1", 10))
            await asyncio.sleep(0.05)
            # another process relabels the site: its row changes, the notification is lost
            relabelled = Site(name="s1", labels={"zone": "b"}, created=1.0, enrolled=1.0)
            relabelled.revision, relabelled.digest = 7, "other"
            await store.sites.save(relabelled)
            feed.changes.append((1, CHANGE_SITE, "s1"))
            started = time.monotonic()
            assert await asyncio.wait_for(waiting, POLL_SECONDS * 3)
            assert time.monotonic() - started <= POLL_SECONDS * 2
            assert core.fleet.sites["s1"].labels == {"zone": "b"}
            for _ in range(100):  # the position moves once the whole batch is applied
                if follower.position == 1:
                    break
                await asyncio.sleep(0.01)
            assert follower.position == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await store.close()

    asyncio.run(main())


def test_a_failed_read_keeps_the_position_so_no_change_is_skipped(tmp_path: Path) -> None:
    async def main() -> None:
        store = SQLiteStore(tmp_path / "control.db")
        await store.open()
        feed = SilentFeed()
        core = Core(store)
        reloaded: list[str] = []

        async def reload_apps() -> None:
            reloaded.append("app")
            raise StoreUnavailable("gone again")

        follower = Follower(core, feed, {"app": reload_apps})
        feed.changes.append((5, "app", "vision"))
        with pytest.raises(StoreUnavailable):
            await follower.catch_up()
        assert follower.position == 0 and reloaded == ["app"]
        feed.fail_reads = 1
        with pytest.raises(StoreUnavailable):
            await follower.catch_up()
        assert follower.position == 0
        await store.close()

    asyncio.run(main())
