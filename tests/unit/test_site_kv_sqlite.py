"""What only the SQLite engine of the site store does: one file that survives a restart, a
bounded change log, its own expiry task, and a clear error once it is closed or unreadable."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from enforcer.site.kv.base import Compacted, InvalidRequest, Unavailable
from enforcer.site.kv.sqlite import SqliteKV
from tests.unit.test_site_kv import FakeClock


def test_keys_revisions_and_leases_survive_reopening_the_file(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        kv = await SqliteKV.open(tmp_path / "kv.db", clock=clock, expiry_interval=0)
        lease = await kv.grant(10)
        await kv.put("/a", b"1")
        revision = await kv.put("/held", b"h", lease=lease.id)
        await kv.close()

        kv = await SqliteKV.open(tmp_path / "kv.db", clock=clock, expiry_interval=0)
        entry = await kv.get("/held")
        assert entry is not None and (entry.mod_revision, entry.lease) == (revision, lease.id)
        assert await kv.put("/b", b"2") == revision + 1
        clock.now += 11
        assert await kv.expire() == [lease.id]
        assert await kv.get("/held") is None
        await kv.close()

    asyncio.run(main())


def test_the_change_log_keeps_only_the_last_revisions(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "kv.db", keep_changes=3, expiry_interval=0)
        revisions = [await kv.put("/a", str(i).encode()) for i in range(6)]
        events = aiter(kv.watch("/a", revisions[-3]))
        assert [(await anext(events)).value for _ in range(3)] == [b"3", b"4", b"5"]
        with pytest.raises(Compacted) as caught:
            await anext(aiter(kv.watch("/a", revisions[-4])))
        assert caught.value.compact_revision == revisions[-3]
        await kv.close()

    asyncio.run(main())


def test_a_watcher_that_falls_behind_the_log_gets_compacted(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "kv.db", keep_changes=2, expiry_interval=0)
        first = await kv.put("/a", b"0")
        events = aiter(kv.watch("/a", first))
        assert (await anext(events)).value == b"0"
        for i in range(1, 5):  # written while the watcher is not reading
            await kv.put("/a", str(i).encode())
        with pytest.raises(Compacted):
            await anext(events)
        await kv.close()

    asyncio.run(main())


def test_leases_expire_on_their_own_in_real_time(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "kv.db", expiry_interval=0.05)
        lease = await kv.grant(0.2)
        await kv.put("/hosts/a", b"a", lease=lease.id)
        _, revision = await kv.range("")
        events = aiter(kv.watch("/hosts/", revision + 1))
        started = time.monotonic()
        event = await asyncio.wait_for(anext(events), timeout=3)
        assert event.key == "/hosts/a" and event.kind.value == "delete"
        assert 0.15 <= time.monotonic() - started < 1.0
        await kv.close()

    asyncio.run(main())


def test_a_closed_store_answers_unavailable_and_ends_its_watches(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "kv.db", expiry_interval=0)
        revision = await kv.put("/a", b"1")
        events = aiter(kv.watch("/a", revision + 1))
        waiting = asyncio.create_task(anext(events))
        await asyncio.sleep(0.05)
        await kv.close()
        with pytest.raises(Unavailable, match="closed"):
            await asyncio.wait_for(waiting, timeout=3)
        with pytest.raises(Unavailable, match="closed"):
            await kv.get("/a")
        health = await kv.health()
        assert not health.ok and "closed" in health.detail

    asyncio.run(main())


def test_a_store_file_that_cannot_be_opened_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "kv.db").mkdir()  # a directory where the file should be

    async def main() -> None:
        with pytest.raises(Unavailable, match=r"kv\.db"):
            await SqliteKV.open(tmp_path / "kv.db")

    asyncio.run(main())


def test_a_watch_must_start_at_a_real_revision(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "kv.db", expiry_interval=0)
        with pytest.raises(InvalidRequest, match="revision 1 or later"):
            await anext(aiter(kv.watch("/a", 0)))
        await kv.close()

    asyncio.run(main())


def test_a_write_the_file_refuses_names_the_file_and_keeps_the_previous_state(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "kv.db", expiry_interval=0)
        revision = await kv.put("/a", b"1")
        await kv.db.execute("PRAGMA query_only = 1")  # SQLite now refuses every write
        with pytest.raises(Unavailable, match=r"cannot write the site store .*kv\.db"):
            await kv.put("/a", b"2")
        entry = await kv.get("/a")
        assert entry is not None and (entry.value, entry.mod_revision) == (b"1", revision)
        await kv.db.execute("PRAGMA query_only = 0")
        assert await kv.put("/a", b"2") == revision + 1
        await kv.close()

    asyncio.run(main())


def test_a_store_file_is_held_by_one_store_at_a_time(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "kv.db", expiry_interval=0)
        with pytest.raises(Unavailable, match=r"kv\.db is already open"):
            await SqliteKV.open(tmp_path / "kv.db", expiry_interval=0)
        await kv.close()
        again = await SqliteKV.open(tmp_path / "kv.db", expiry_interval=0)
        await again.close()

    asyncio.run(main())
