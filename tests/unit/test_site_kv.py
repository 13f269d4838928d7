"""The site store's contract, the same for every engine: revisions, compare-and-swap, leases, watch.

Each test takes `engine` (a harness around one engine) and runs its body against a fresh store.
Here the SQLite engine, on a real file with a fake clock; tests/integration/test_site_kv_etcd.py
imports these tests and runs them against a real etcd process by overriding `engine`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from enforcer.site.kv.base import (
    Compacted,
    Event,
    EventKind,
    InvalidRequest,
    LeaseNotFound,
    SiteKV,
)
from enforcer.site.kv.lease import KeptLease
from enforcer.site.kv.sqlite import SqliteKV

Body = Callable[[SiteKV], Awaitable[None]]


class Engine(Protocol):
    """What a conformance test needs of an engine: a fresh store, and a way to let time pass."""

    name: str
    ttl: float  # a short lease TTL that this engine honours as asked

    def run(self, body: Body) -> None: ...

    async def pass_time(self, kv: SiteKV, seconds: float, keep: Sequence[KeptLease] = ()) -> None:
        """Let `seconds` pass for the store's leases, while the leases in `keep` are renewed
        as their keepers would."""
        ...


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class SqliteEngine:
    name = "sqlite"
    ttl = 3.0

    def __init__(self, path: Path, keep_changes: int = 10_000) -> None:
        self.path = path
        self.clock = FakeClock()
        self.keep_changes = keep_changes

    @contextlib.asynccontextmanager
    async def store(self) -> AsyncIterator[SqliteKV]:
        kv = await SqliteKV.open(
            self.path, clock=self.clock, keep_changes=self.keep_changes, expiry_interval=0
        )
        try:
            yield kv
        finally:
            await kv.close()

    def run(self, body: Body) -> None:
        async def main() -> None:
            async with self.store() as kv:
                await asyncio.wait_for(body(kv), timeout=20)

        asyncio.run(main())

    async def pass_time(self, kv: SiteKV, seconds: float, keep: Sequence[KeptLease] = ()) -> None:
        assert isinstance(kv, SqliteKV)
        step = self.ttl / 4
        while seconds > 0:
            for lease in keep:
                await lease.renew()
            self.clock.now += min(step, seconds)
            seconds -= step
            await kv.expire()
            await asyncio.sleep(0.01)  # let watchers see what expired


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    yield SqliteEngine(tmp_path / "site-kv.db")


async def next_events(events: AsyncIterator[Event], count: int) -> list[Event]:
    return [await asyncio.wait_for(anext(events), timeout=5) for _ in range(count)]


# -- keys and revisions ------------------------------------------------------------------
def test_a_put_key_reads_back_with_its_revisions(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        first = await kv.put("/a", b"1")
        second = await kv.put("/a", b"2")
        entry = await kv.get("/a")
        assert entry is not None
        assert (entry.value, entry.create_revision, entry.mod_revision) == (b"2", first, second)
        assert entry.version == 2 and entry.lease is None
        assert second > first
        assert await kv.get("/missing") is None

    engine.run(body)


def test_every_change_takes_the_next_store_wide_revision(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        _, start = await kv.range("")
        revisions = [await kv.put(f"/k{i}", b"x") for i in range(3)]
        assert revisions == [start + 1, start + 2, start + 3]
        _, now = await kv.range("/nothing/")
        assert now == start + 3

    engine.run(body)


def test_range_lists_only_the_prefix_sorted_by_key(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        for key in ("/hosts/b", "/hosts/a", "/hostsx", "/apps/a"):
            await kv.put(key, key.encode())
        entries, revision = await kv.range("/hosts/")
        assert [e.key for e in entries] == ["/hosts/a", "/hosts/b"]
        assert revision == max(e.mod_revision for e in (await kv.range(""))[0])

    engine.run(body)


def test_delete_removes_a_key_or_a_prefix_and_counts_them(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        for key in ("/a/1", "/a/2", "/b"):
            await kv.put(key, b"x")
        assert await kv.delete("/b") == 1
        _, before = await kv.range("")
        assert await kv.delete("/b") == 0
        assert (await kv.range(""))[1] == before  # deleting nothing is no change
        assert await kv.delete("/a/", prefix=True) == 2
        assert (await kv.range(""))[0] == []

    engine.run(body)


def test_a_key_deleted_and_put_again_is_created_anew(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        await kv.put("/a", b"1")
        await kv.put("/a", b"2")
        await kv.delete("/a")
        again = await kv.put("/a", b"3")
        entry = await kv.get("/a")
        assert entry is not None and (entry.create_revision, entry.version) == (again, 1)

    engine.run(body)


# -- compare-and-swap --------------------------------------------------------------------
def test_create_writes_only_a_key_that_is_absent(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        revision = await kv.create("/leader", b"a")
        assert revision is not None
        assert await kv.create("/leader", b"b") is None
        entry = await kv.get("/leader")
        assert entry is not None and entry.value == b"a" and entry.mod_revision == revision

    engine.run(body)


def test_replace_writes_only_over_the_revision_the_caller_read(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        read = await kv.put("/counter", b"1")
        assert await kv.replace("/counter", b"2", read) is not None
        assert await kv.replace("/counter", b"3", read) is None  # lost the race
        assert await kv.replace("/absent", b"1", read) is None
        entry = await kv.get("/counter")
        assert entry is not None and entry.value == b"2"

    engine.run(body)


# -- leases ------------------------------------------------------------------------------
def test_keys_of_a_lease_vanish_when_it_expires(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        lease = await kv.grant(engine.ttl)
        await kv.put("/hosts/a", b"a", lease=lease.id)
        await kv.put("/hosts/keep", b"k")
        entry = await kv.get("/hosts/a")
        assert entry is not None and entry.lease == lease.id
        await engine.pass_time(kv, engine.ttl / 2)
        assert await kv.get("/hosts/a") is not None
        await engine.pass_time(kv, engine.ttl)
        assert await kv.get("/hosts/a") is None
        assert await kv.get("/hosts/keep") is not None
        assert await kv.time_to_live(lease.id) is None
        with pytest.raises(LeaseNotFound):
            await kv.keep_alive(lease.id)
        with pytest.raises(LeaseNotFound):
            await kv.put("/hosts/a", b"again", lease=lease.id)

    engine.run(body)


def test_keep_alive_holds_a_lease_past_its_ttl(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        lease = await kv.grant(engine.ttl)
        await kv.put("/hosts/a", b"a", lease=lease.id)
        for _ in range(3):
            await engine.pass_time(kv, engine.ttl * 0.6)
            assert await kv.keep_alive(lease.id) == pytest.approx(engine.ttl)
        left = await kv.time_to_live(lease.id)
        assert left is not None and 0 < left <= engine.ttl
        assert await kv.get("/hosts/a") is not None

    engine.run(body)


def test_revoking_a_lease_deletes_its_keys_at_once(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        lease = await kv.grant(engine.ttl)
        for key in ("/e/a", "/e/b"):
            await kv.put(key, b"x", lease=lease.id)
        _, revision = await kv.range("")
        events = aiter(kv.watch("/e/", revision + 1))
        await kv.revoke(lease.id)
        await kv.revoke(lease.id)  # already gone: no error
        seen = await next_events(events, 2)
        assert [(e.kind, e.key) for e in seen] == [
            (EventKind.DELETE, "/e/a"),
            (EventKind.DELETE, "/e/b"),
        ]
        assert seen[0].revision == seen[1].revision  # one change
        assert (await kv.range("/e/"))[0] == []
        with pytest.raises(LeaseNotFound):
            await kv.put("/e/c", b"x", lease=lease.id)

    engine.run(body)


# -- watch -------------------------------------------------------------------------------
def test_watch_replays_changes_from_a_past_revision_then_follows_new_ones(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        first = await kv.put("/w/a", b"1")
        await kv.put("/other", b"x")
        await kv.delete("/w/a")
        events = aiter(kv.watch("/w/", first))
        seen = await next_events(events, 2)
        assert [(e.kind, e.key, e.value) for e in seen] == [
            (EventKind.PUT, "/w/a", b"1"),
            (EventKind.DELETE, "/w/a", b""),
        ]
        assert seen[0].revision == first and seen[0].create_revision == first
        assert seen[1].revision > first

        later = asyncio.create_task(next_events(events, 1))
        await asyncio.sleep(0.05)
        assert not later.done()  # nothing new yet: the watch waits
        await kv.put("/elsewhere", b"x")
        revision = await kv.put("/w/b", b"2")
        (event,) = await later
        assert (event.kind, event.key, event.value, event.revision) == (
            EventKind.PUT,
            "/w/b",
            b"2",
            revision,
        )

    engine.run(body)


def test_a_watch_from_a_compacted_revision_raises_compacted(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        old = await kv.put("/c/a", b"1")
        await kv.put("/c/a", b"2")
        now = await kv.put("/c/a", b"3")
        await kv.compact(now)
        with pytest.raises(Compacted) as caught:
            await anext(aiter(kv.watch("/c/", old)))
        assert caught.value.compact_revision == now
        assert "re-list" in str(caught.value)
        # the caller re-lists and watches from there
        entries, revision = await kv.range("/c/")
        assert [e.value for e in entries] == [b"3"]
        events = aiter(kv.watch("/c/", revision + 1))
        await kv.put("/c/a", b"4")
        (event,) = await next_events(events, 1)
        assert event.value == b"4"

    engine.run(body)


# -- bad input and health ----------------------------------------------------------------
def test_bad_keys_ttls_and_revisions_are_refused_with_a_clear_message(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        with pytest.raises(InvalidRequest, match="non-empty"):
            await kv.put("", b"x")
        with pytest.raises(InvalidRequest, match="TTL"):
            await kv.grant(0)
        _, revision = await kv.range("")
        with pytest.raises(InvalidRequest, match="revision"):
            await kv.compact(revision + 10)
        with pytest.raises(LeaseNotFound, match="not found"):
            await kv.put("/a", b"x", lease=0x7EADBEEF)
        assert await kv.get("/a") is None

    engine.run(body)


def test_a_healthy_store_says_so_with_its_revision(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        revision = await kv.put("/a", b"1")
        health = await kv.health()
        assert health.ok and health.engine == engine.name
        assert health.revision >= revision

    engine.run(body)
