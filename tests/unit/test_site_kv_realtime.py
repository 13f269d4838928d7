"""Election and registration on the SQLite engine in real time, with their own keepers running:
what a one-host site (and the tests of a multi-host one) rely on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from enforcer.site.kv.election import Election
from enforcer.site.kv.registry import HostRecord, InvalidHostRecord, Registration, live_hosts
from enforcer.site.kv.sqlite import SqliteKV

TTL = 0.4


def test_keepers_hold_a_registration_and_a_leadership_for_many_ttls(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "kv.db", expiry_interval=0.05)
        reg = Registration(kv, HostRecord("host-a", "127.0.0.11"), ttl=TTL)
        await reg.register()
        leader = Election(kv, "host-a", ttl=TTL)
        await leader.campaign()
        await asyncio.sleep(TTL * 5)
        assert [h.record.id for h in await live_hosts(kv)] == ["host-a"]
        assert leader.is_leader and not leader.lost.is_set()
        await reg.deregister()
        await leader.resign()
        await kv.close()

    asyncio.run(main())


def test_a_new_leader_is_elected_within_the_ttl_after_the_leader_dies(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "kv.db", expiry_interval=0.05)
        a, b = (Election(kv, name, ttl=TTL) for name in ("host-a", "host-b"))
        await a.campaign()
        b_leads = asyncio.create_task(b.campaign())
        await asyncio.sleep(0.1)
        await a.lease.stop(revoke=False)  # dies: stops renewing
        died = time.monotonic()
        await asyncio.wait_for(b_leads, timeout=5)
        took = time.monotonic() - died
        assert TTL * 0.5 < took < TTL + 0.3, took
        await b.resign()
        await kv.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"id": "", "address": "a", "role": "worker"}', "host id"),
        (b'{"id": "a/b", "address": "a", "role": "worker"}', "without '/'"),
        (b'{"id": "a", "address": "", "role": "worker"}', "address"),
        (b'{"id": "a", "address": "x", "role": "boss"}', "controller or worker, not 'boss'"),
        (b'{"id": "a", "address": "x", "role": "worker", "cpus": -1}', "cpus"),
        (b'{"id": "a", "address": "x", "role": "worker", "memory": 1.5}', "memory"),
        (b'{"id": "a", "address": "x", "role": "worker", "labels": {"k": 1}}', "labels"),
        (b'{"id": "a", "address": "x", "role": "worker", "images": "busybox"}', "images"),
    ],
)
def test_a_malformed_host_record_names_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(InvalidHostRecord, match=message):
        HostRecord.from_json(data)


def test_a_host_record_reads_back_as_written() -> None:
    record = HostRecord(
        "host-a",
        "127.0.0.11",
        "worker",
        labels=(("a", "1"), ("b", "2")),
        device_labels=("camera",),
        defined_device_labels=("camera", "serial"),
        gpu_ids=("0000:17:00.0",),
        cpus=2.5,
        memory=1 << 30,
        images=("busybox:1",),
    )
    assert HostRecord.from_json(record.to_json()) == record
