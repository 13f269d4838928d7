"""Control's log requests relayed between two hosts through a real etcd (Debian's
etcd-server, its default request limit of 1.5 MiB): the largest reply a host sends fits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from enforcer.logs.replies import MAX_TAIL, REPLY_BYTES
from enforcer.site.cluster.logrecords import REPLY_RECORD_BYTES, encode_reply
from enforcer.site.cluster.logrelay import LogRelay
from enforcer.site.cluster.records import LOGS
from enforcer.site.etcd.gateway import EtcdGateway
from enforcer.site.kv.etcd import EtcdKV
from tests.support.ci import running
from tests.support.etcd import EtcdProcess

REQUEST = {"id": "r1", "kind": "logs", "instance": "web.web.1", "container": None,
           "tail": MAX_TAIL}  # fmt: skip


def test_the_largest_reply_a_host_sends_reaches_the_leader_through_etcd() -> None:
    # the most a reply holds: REPLY_BYTES of line text in the most lines, each written as JSON
    # with an escape for every character (\u0001: 6 bytes for 1)
    text = "\x01" * (REPLY_BYTES // MAX_TAIL)
    lines = [{"time": 1795996800.0 + n, "stream": "stderr", "line": text} for n in range(MAX_TAIL)]
    assert len(encode_reply({"lines": lines, "error": None}, limit=10**9)) > 1536 * 1024

    async def answer(request: Any) -> dict[str, Any]:
        return {"lines": lines, "error": None}

    async def main(url: str) -> None:
        leader_kv, other_kv = EtcdKV(EtcdGateway([url])), EtcdKV(EtcdGateway([url]))
        leader, other = LogRelay(leader_kv, "h1", answer), LogRelay(other_kv, "h2", answer)
        other.start()
        try:
            await asyncio.wait_for(other.serving.wait(), 10)
            started = time.monotonic()
            reply = await leader.ask("h2", REQUEST, "store-7")
            took = time.monotonic() - started
            assert reply["error"] is None, reply["error"]
            kept = reply["lines"]
            assert len(encode_reply(reply, limit=10**9)) <= REPLY_RECORD_BYTES
            assert 0 < len(kept) < len(lines) and kept == lines[-len(kept) :]  # the newest
            assert took < 3.0, f"the reply took {took:.2f}s"
            entries, _ = await leader_kv.range(LOGS)
            assert entries == []  # the request and its reply went with the leader's lease
            # a host that is not there is named once the leader's wait is over
            leader.wait = 1.0
            gone = await leader.ask("h9", REQUEST, "store-7")
            assert gone == {
                "lines": [],
                "error": "host h9 of site store-7 did not answer within 1 s",
            }
            assert (await leader_kv.range(LOGS))[0] == []
        finally:
            await other.stop()
            await leader_kv.close()
            await other_kv.close()

    with running(EtcdProcess()) as process:
        asyncio.run(main(process.client_url))
