"""A full outbox drops its oldest events, counts them and tells control how many."""

from __future__ import annotations

import asyncio
from pathlib import Path

from enforcer.link.outbox import EventQueue


def test_a_full_outbox_drops_the_oldest_and_the_next_batch_starts_with_the_count(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        queue = EventQueue(tmp_path / "sync.db", cap=5)
        await queue.open()
        for n in range(8):
            queue.push({"kind": "x", "n": n})
        batch = await queue.batch()
        head, *rest = batch.events
        assert head["kind"] == "events-dropped"
        assert head["fields"] == {"count": 3}
        assert head["message"] == ("3 events dropped while control was unreachable (outbox full)")
        assert {"app", "instance", "tenant", "time"} <= head.keys()
        assert [e["n"] for e in rest] == [3, 4, 5, 6, 7]  # the newest kept, in order
        await queue.acknowledge(batch)
        queue.push({"kind": "x", "n": 8})
        following = await queue.batch()
        assert [e.get("n") for e in following.events] == [8]  # told once
        await queue.aclose()

    asyncio.run(main())


def test_the_batch_in_flight_is_never_dropped_and_its_count_survives_a_restart(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        path = tmp_path / "sync.db"
        queue = EventQueue(path, cap=4)
        await queue.open()
        for n in range(3):
            queue.push({"n": n})
        in_flight = await queue.batch(limit=2)  # control is away: it stays in flight
        for n in range(3, 10):
            queue.push({"n": n})
        again = await queue.batch(limit=2)
        assert again == in_flight  # its events are kept, whatever else is dropped
        await queue.aclose()
        queue = EventQueue(path, cap=4)  # the enforcer restarts; control comes back
        await queue.open()
        await queue.acknowledge(await queue.batch(limit=2))
        batch = await queue.batch()
        head, *rest = batch.events
        assert head["kind"] == "events-dropped"
        # 4 held in all: the 2 in flight and the 2 newest; 2 to 7 were dropped
        assert head["fields"]["count"] == 6
        assert [e["n"] for e in rest] == [8, 9]
        resent = await queue.batch()  # sent again (no answer): the same head
        assert resent == batch
        await queue.aclose()

    asyncio.run(main())


def test_a_count_alone_is_sent_when_every_queued_event_was_dropped(tmp_path: Path) -> None:
    async def main() -> None:
        queue = EventQueue(tmp_path / "sync.db", cap=1)
        await queue.open()
        queue.push({"n": 0})
        queue.push({"n": 1})
        assert await queue.pending()
        batch = await queue.batch()
        assert [e.get("kind", e.get("n")) for e in batch.events] == ["events-dropped", 1]
        await queue.aclose()

    asyncio.run(main())


def test_a_batch_goes_as_compact_json_and_a_large_one_gzip_compressed() -> None:
    import gzip
    import json

    from enforcer.link.sync import _encode

    small = {"seq": 1, "status": None, "events": [{"kind": "log-error", "message": "boom"}]}
    data, headers = _encode(small)
    assert data == b'{"seq":1,"status":null,"events":[{"kind":"log-error","message":"boom"}]}'
    assert "Content-Encoding" not in headers
    large = {"seq": 2, "status": None, "events": [{"message": f"ERROR {n}"} for n in range(200)]}
    data, headers = _encode(large)
    assert headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(data)) == large
    assert len(data) < len(json.dumps(large)) / 4
