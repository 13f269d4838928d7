"""The site side of sync: backoff, Retry-After and the persistent outbox, whose SQLite work
never runs on the event loop."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

from enforcer.link.backoff import BACKOFF_CAP, Backoff, parse_retry_after
from enforcer.link.outbox import EventQueue


def test_backoff_grows_exponentially_with_full_jitter_up_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=30.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(12)]
    for attempt, delay in enumerate(delays):
        assert 0.0 <= delay <= min(30.0, 2.0**attempt)
    assert max(delays[6:]) > 8  # it does grow
    backoff.reset()
    assert backoff.next() <= 1.0


def test_the_default_backoff_never_waits_more_than_five_seconds_and_spreads_sites() -> None:
    assert BACKOFF_CAP <= 5.0
    backoff = Backoff(rng=random.Random(3))
    delays = [backoff.next() for _ in range(200)]
    assert max(delays) <= BACKOFF_CAP
    late = delays[20:]
    assert min(late) < 1.0 and max(late) > 4.0  # full jitter: the whole interval is used


def test_retry_after_is_honoured_as_a_floor() -> None:
    backoff = Backoff(rng=random.Random(2))
    assert all(5.0 <= backoff.after_retry_after(5.0) <= 7.5 for _ in range(50))
    assert all(backoff.after_retry_after(60.0) >= 60.0 for _ in range(50))  # above the cap too
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Sat, 21 Nov 2026 18:00:10 GMT", now=1795284000.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_queued_events_survive_a_restart_and_a_batch_keeps_its_seq(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "sync.db"
        queue = EventQueue(path)
        await queue.open()
        for n in range(3):
            queue.push({"n": n})
        batch = await queue.batch(limit=2)
        assert (batch.seq, [e["n"] for e in batch.events]) == (1, [0, 1])
        queue.push({"n": 3})
        await queue.aclose()
        queue = EventQueue(path)  # the enforcer restarted before control answered
        await queue.open()
        assert queue.queued == 4
        again = await queue.batch(limit=2)
        assert again == batch
        await queue.acknowledge(again)
        following = await queue.batch()
        assert (following.seq, [e["n"] for e in following.events]) == (2, [2, 3])
        await queue.acknowledge(following)
        assert not await queue.pending() and queue.queued == 0
        await queue.set_revision(7)
        await queue.aclose()
        queue = EventQueue(path)
        await queue.open()
        assert queue.revision == 7
        await queue.aclose()

    asyncio.run(main())


def test_renumbering_moves_the_batch_in_flight(tmp_path: Path) -> None:
    async def main() -> None:
        queue = EventQueue(tmp_path / "sync.db")
        queue.push({"n": 1})
        first = await queue.batch()
        await queue.renumber(12)
        moved = await queue.batch()
        assert moved.seq == 12 and moved.events == first.events
        await queue.acknowledge(moved)
        assert (await queue.batch()).seq == 13
        await queue.aclose()

    asyncio.run(main())


def test_the_outbox_touches_sqlite_only_off_the_event_loop(tmp_path: Path) -> None:
    threads: set[str] = set()
    queue = EventQueue(tmp_path / "sync.db")
    conn = queue._conn

    def recording_conn() -> object:
        threads.add(threading.current_thread().name)
        return conn()

    queue._conn = recording_conn  # type: ignore[method-assign,assignment]

    async def main() -> None:
        loop_thread = threading.current_thread().name
        await queue.open()
        for n in range(20):
            queue.push({"n": n})
        batch = await queue.batch()
        await queue.acknowledge(batch)
        assert await queue.pending() is False
        await queue.aclose()
        assert threads and loop_thread not in threads

    asyncio.run(main())
