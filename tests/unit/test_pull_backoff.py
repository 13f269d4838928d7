"""A failed pull is tried again after the backoff, counted from the failure, not the start."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from enforcer.facade import InstanceState
from enforcer.reconcile.restarts import BackoffPolicy
from enforcer.reconcile.runtime import PullStalled
from enforcer.reconcile.worker import InstanceWorker


class SlowStallingImages:
    """Each pull waits `took` seconds (a slot, then no progress), then stalls."""

    def __init__(self, took: float) -> None:
        self.took = took
        self.pulls = 0

    async def pull(self, ref: str) -> str:
        self.pulls += 1
        await asyncio.sleep(self.took)
        raise PullStalled(f"pulling {ref} stalled: no progress for {self.took}s")


class Rec:
    def __init__(self, images: SlowStallingImages, initial: float) -> None:
        self.images = images
        self.backoff = BackoffPolicy(initial=initial, jitter=0.0)
        self.events: list[str] = []

    def status_changed(self) -> None:
        pass

    async def event(self, kind: str, message: str, w: Any, **fields: Any) -> None:
        self.events.append(kind)


def test_a_pull_slower_than_the_first_delay_still_waits_that_delay_after_failing() -> None:
    async def scenario() -> None:
        rec = Rec(SlowStallingImages(took=0.3), initial=0.2)
        worker = InstanceWorker(rec, "a.s.0")  # type: ignore[arg-type]
        await worker._pull("reg/img:1", {})
        failed_at = time.time()
        assert worker.state is InstanceState.IMAGE_PULL_FAILED
        assert rec.events == ["image.pull-stalled"]
        assert worker.next_wake is not None and worker.next_wake >= failed_at + 0.95
        await worker._pull("reg/img:1", {})  # woken early: not tried again yet
        assert rec.images.pulls == 1
        assert worker.state is InstanceState.IMAGE_PULL_FAILED

    asyncio.run(scenario())
