"""Control's log requests relayed by the site's leader to the host that runs the instance,
through a real SQLite site store (`enforcer.site.cluster.logrelay`, `.logrecords`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from enforcer.facade import NotFound
from enforcer.logs.requests import answer_log_request
from enforcer.runtime.logstream import LogLine
from enforcer.site.cluster.logrecords import (
    LEASE_TTL,
    REPLY_RECORD_BYTES,
    decode_reply,
    encode_reply,
    encode_request,
    new_request_id,
    reply_key,
    request_id,
    request_key,
)
from enforcer.site.cluster.logrelay import ANSWERS_AT_ONCE, LogRelay
from enforcer.site.cluster.records import LOGS
from enforcer.site.kv.base import KVError
from enforcer.site.kv.sqlite import SqliteKV

REQUEST = {"id": "r1", "kind": "logs", "instance": "web.web.1", "container": None, "tail": 2}


def lines_of(host: str) -> Callable[[Any], Any]:
    async def answer(request: Any) -> dict[str, Any]:
        line = {"time": 1.0, "stream": "stdout", "line": f"{request['instance']} on {host}"}
        return {"lines": [line], "error": None}

    return answer


async def left_behind(kv: SqliteKV) -> list[str]:
    entries, _ = await kv.range(LOGS)
    return [e.key for e in entries]


def test_the_leader_gets_the_lines_from_the_host_that_runs_the_instance_and_nothing_stays(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "site.db")
        leader = LogRelay(kv, "h1", lines_of("h1"))
        other = LogRelay(kv, "h2", lines_of("h2"))
        other.start()
        try:
            await asyncio.wait_for(other.serving.wait(), 5)
            started = time.monotonic()
            reply = await leader.ask("h2", REQUEST, "store-7")
            assert time.monotonic() - started < 1.0
            assert reply == {
                "lines": [{"time": 1.0, "stream": "stdout", "line": "web.web.1 on h2"}],
                "error": None,
            }
            assert await left_behind(kv) == []  # the request and its reply went with the lease
            again = await leader.ask("h2", {**REQUEST, "instance": "web.web.2"}, "store-7")
            assert again["lines"][0]["line"] == "web.web.2 on h2"
        finally:
            await other.stop()
            await kv.close()

    asyncio.run(main())


def test_a_host_that_does_not_answer_is_named_within_the_wait_and_nothing_stays(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "site.db")
        leader = LogRelay(kv, "h1", lines_of("h1"), wait=0.5)
        try:
            started = time.monotonic()
            reply = await leader.ask("h3", REQUEST, "store-7")
            assert time.monotonic() - started < 1.5
            assert reply == {
                "lines": [], "error": "host h3 of site store-7 did not answer within 0.5 s",
            }  # fmt: skip
            assert await left_behind(kv) == []
        finally:
            await kv.close()

    asyncio.run(main())


def test_a_request_found_when_the_host_starts_is_answered_on_the_leaders_lease_which_ends_both(
    tmp_path: Path,
) -> None:
    """A leader that died before it revoked its lease leaves nothing past the lease's TTL."""

    async def main() -> None:
        now = [1000.0]
        kv = await SqliteKV.open(tmp_path / "site.db", clock=lambda: now[0], expiry_interval=0)
        lease = await kv.grant(LEASE_TTL)
        name = new_request_id()
        await kv.put(request_key("h2", name), encode_request(REQUEST), lease.id)
        await kv.put(request_key("h2", "not-an-id"), b"{}", lease.id)  # not a request: left be
        other = LogRelay(kv, "h2", lines_of("h2"))
        other.start()
        try:
            for _ in range(100):
                reply = await kv.get(reply_key(name))
                if reply is not None:
                    break
                await asyncio.sleep(0.05)
            assert reply is not None and reply.lease == lease.id
            assert decode_reply(reply.value, "h2")["lines"][0]["line"] == "web.web.1 on h2"
            assert len(await left_behind(kv)) == 3
            now[0] += LEASE_TTL + 1
            await kv.expire()
            assert await left_behind(kv) == []
        finally:
            await other.stop()
            await kv.close()

    asyncio.run(main())


def test_a_host_answers_a_few_requests_at_once_and_every_one_of_them(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "site.db")
        busy, most = [0], [0]

        async def slow(request: Any) -> dict[str, Any]:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
            await asyncio.sleep(0.1)
            busy[0] -= 1
            return {"lines": [{"time": 0.0, "stream": "stdout", "line": request["instance"]}],
                    "error": None}  # fmt: skip

        leader = LogRelay(kv, "h1", lines_of("h1"))
        other = LogRelay(kv, "h2", slow)
        other.start()
        try:
            asks = [leader.ask("h2", {**REQUEST, "instance": f"web.web.{n}"}, "s")
                    for n in range(8)]  # fmt: skip
            replies = await asyncio.gather(*asks)
            assert [r["lines"][0]["line"] for r in replies] == [f"web.web.{n}" for n in range(8)]
            assert most[0] == ANSWERS_AT_ONCE
            assert await left_behind(kv) == []
        finally:
            await other.stop()
            await kv.close()

    asyncio.run(main())


def test_a_failing_answer_and_a_reply_that_is_no_reply_are_told_to_the_leader(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "site.db")

        async def broken(request: Any) -> dict[str, Any]:
            raise RuntimeError("the engine went away")

        leader = LogRelay(kv, "h1", lines_of("h1"))
        other = LogRelay(kv, "h2", broken)
        other.start()
        try:
            reply = await leader.ask("h2", REQUEST, "s")
            assert reply == {"lines": [], "error": (
                "host h2 could not read the logs: the engine went away")}  # fmt: skip
        finally:
            await other.stop()
            await kv.close()
        assert decode_reply(b"[1]", "h2")["error"].startswith("host h2 answered with no log reply")
        assert decode_reply(b"\xff", "h2")["lines"] == []

    asyncio.run(main())


def test_a_reply_record_stays_within_the_store_limit_keeping_the_newest_lines() -> None:
    # 10,000 short lines of control characters: a JSON escape each (6 bytes for 1)
    lines = [{"time": float(n), "stream": "stderr", "line": "\x01" * 100 + str(n)}
             for n in range(10_000)]  # fmt: skip
    body = encode_reply({"lines": lines, "error": None})
    assert len(body) <= REPLY_RECORD_BYTES
    kept = json.loads(body)["lines"]
    assert 0 < len(kept) < len(lines) and kept == lines[-len(kept) :]
    small = {"lines": lines[:3], "error": None}
    assert json.loads(encode_reply(small)) == small
    assert request_id(request_key("h2", "0" * 32), "h2") == "0" * 32
    assert request_id(request_key("h2", "0" * 32), "h3") is None
    assert request_id(reply_key("0" * 32), "h2") is None


def test_the_leader_relays_a_request_for_an_instance_another_host_runs() -> None:
    async def main() -> None:
        async def find(instance: str, container: str | None) -> str:
            raise NotFound(f"instance {instance} does not exist")

        async def nothing(container_id: str, **kwargs: Any) -> AsyncIterator[list[LogLine]]:
            yield []

        class NoEngine:
            batches = staticmethod(nothing)

        asked: list[tuple[str, Any]] = []

        async def relay(host: str, request: Any) -> dict[str, Any]:
            asked.append((host, request))
            return {"lines": [], "error": "from h2"}

        where = {"web.web.1": "h2"}.get
        answer = await answer_log_request(REQUEST, find, NoEngine(), "s", where, relay)
        assert answer == {"lines": [], "error": "from h2"} and asked == [("h2", REQUEST)]
        missing = await answer_log_request(
            {**REQUEST, "instance": "web.web.9"}, find, NoEngine(), "s", where, relay
        )
        assert missing["error"] == "instance web.web.9 does not exist at site s" and len(asked) == 1

    asyncio.run(main())


class SmallStore(SqliteKV):
    """A store that refuses large values, as etcd refuses a request over its limit."""

    async def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        if len(value) > 1000:
            raise KVError("etcdserver: request is too large")
        return await super().put(key, value, lease)


def test_a_reply_the_store_refuses_reaches_the_leader_as_the_reason_at_once(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        kv = await SmallStore.open(tmp_path / "site.db")

        async def chatty(request: Any) -> dict[str, Any]:
            return {"lines": [{"time": 0.0, "stream": "stdout", "line": "x" * 2000}],
                    "error": None}  # fmt: skip

        leader = LogRelay(kv, "h1", lines_of("h1"))
        other = LogRelay(kv, "h2", chatty)
        other.start()
        try:
            started = time.monotonic()
            reply = await leader.ask("h2", REQUEST, "s")
            assert time.monotonic() - started < 1.0
            assert reply == {"lines": [], "error": (
                "host h2 could not hand its reply to the leader: "
                "etcdserver: request is too large")}  # fmt: skip
            assert await left_behind(kv) == []
        finally:
            await other.stop()
            await kv.close()

    asyncio.run(main())
