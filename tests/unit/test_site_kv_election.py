"""Leader election and host registration on the site store, for every engine (see `engine` in
tests/unit/test_site_kv.py; tests/integration/test_site_kv_etcd.py runs these on etcd)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from enforcer.site.kv.base import SiteKV
from enforcer.site.kv.election import Election, Leader, NotCandidate, current_leader, observe
from enforcer.site.kv.registry import (
    DuplicateHost,
    HostRecord,
    Registration,
    live_hosts,
    watch_hosts,
)
from tests.unit.test_site_kv import Engine, engine

__all__ = ["engine"]  # the fixture, imported for these tests


def elections(kv: SiteKV, engine: Engine, *names: str) -> list[Election]:
    return [Election(kv, name, prefix="/test/leader/", ttl=engine.ttl) for name in names]


async def led_by(task: asyncio.Task[Leader], timeout: float = 10) -> str:
    return (await asyncio.wait_for(task, timeout)).candidate


# -- election ----------------------------------------------------------------------------
def test_the_first_candidate_leads_and_the_others_wait(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        a, b, c = elections(kv, engine, "host-a", "host-b", "host-c")
        assert await current_leader(kv, "/test/leader/") is None
        assert (await a.campaign()).candidate == "host-a"
        waiting = [asyncio.create_task(e.campaign()) for e in (b, c)]
        await asyncio.sleep(0.3)
        assert not any(t.done() for t in waiting)
        assert a.is_leader and not b.is_leader and not c.is_leader
        leader = await current_leader(kv, "/test/leader/")
        assert leader is not None and leader.candidate == "host-a"
        for task in waiting:
            task.cancel()
        for e in (a, b, c):
            await e.resign()

    engine.run(body)


def test_a_resigning_leader_hands_over_to_the_next_in_line(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        a, b, c = elections(kv, engine, "host-a", "host-b", "host-c")
        await a.campaign()
        b_leads = asyncio.create_task(b.campaign())
        await asyncio.sleep(0.1)
        c_leads = asyncio.create_task(c.campaign())
        await asyncio.sleep(0.1)
        await a.resign()
        assert await led_by(b_leads) == "host-b"
        assert not c_leads.done()
        await b.resign()
        assert await led_by(c_leads) == "host-c"
        await c.resign()
        assert await current_leader(kv, "/test/leader/") is None

    engine.run(body)


def test_when_the_leader_dies_the_next_candidate_leads_once_its_lease_expires(
    engine: Engine,
) -> None:
    async def body(kv: SiteKV) -> None:
        a, b, c = elections(kv, engine, "host-a", "host-b", "host-c")
        await a.campaign()
        b_leads = asyncio.create_task(b.campaign())
        await asyncio.sleep(0.1)
        c_leads = asyncio.create_task(c.campaign())
        await asyncio.sleep(0.1)
        await a.lease.stop(revoke=False)  # the leader dies: nobody renews, nobody resigns

        await engine.pass_time(kv, engine.ttl / 2, keep=[b.lease, c.lease])
        assert not b_leads.done()  # not before its lease has expired
        await engine.pass_time(kv, engine.ttl, keep=[b.lease, c.lease])
        assert await led_by(b_leads) == "host-b"
        assert not c_leads.done()
        c_leads.cancel()
        await b.resign()
        await c.resign()

    engine.run(body)


def test_observers_see_every_new_leader_and_the_gap_between(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        a, b = elections(kv, engine, "host-a", "host-b")
        seen: list[str | None] = []
        changes = aiter(observe(kv, "/test/leader/"))

        async def next_leader() -> None:
            leader = await asyncio.wait_for(anext(changes), timeout=10)
            seen.append(leader.candidate if leader else None)

        await next_leader()
        await a.campaign()
        await next_leader()
        b_leads = asyncio.create_task(b.campaign())
        await asyncio.sleep(0.1)
        await a.resign()
        await led_by(b_leads)
        await next_leader()
        await b.resign()
        await next_leader()
        assert seen == [None, "host-a", "host-b", None]

    engine.run(body)


def test_a_leader_whose_lease_is_gone_knows_it_lost_and_may_stand_again(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        (a,) = elections(kv, engine, "host-a")
        await a.campaign()
        await kv.revoke(a.lease.id)  # as the store does when the lease expires
        await a.lease.renew()
        assert a.lost.is_set() and not a.is_leader
        assert (await a.campaign()).candidate == "host-a"
        assert a.is_leader
        await a.resign()

    engine.run(body)


def test_a_waiting_candidate_whose_lease_is_lost_stops_waiting(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        a, b = elections(kv, engine, "host-a", "host-b")
        await a.campaign()
        b_leads = asyncio.create_task(b.campaign())
        await asyncio.sleep(0.1)
        await kv.revoke(b.lease.id)
        with pytest.raises(NotCandidate, match="host-b"):
            await asyncio.wait_for(b_leads, timeout=10)
        assert a.is_leader
        await a.resign()

    engine.run(body)


# -- registration ------------------------------------------------------------------------
def record(host: str, address: str = "", **fields: Any) -> HostRecord:
    return HostRecord(host, address or f"127.0.0.{10 + len(host)}", **fields)


def registration(kv: SiteKV, engine: Engine, rec: HostRecord) -> Registration:
    return Registration(kv, rec, prefix="/test/hosts/", ttl=engine.ttl, retry_interval=0.05)


def test_a_registered_host_is_listed_with_its_record(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        rec = record(
            "host-a",
            labels=(("zone", "front"),),
            device_labels=("camera",),
            gpu_ids=("0000:17:00.0",),
            cpus=4.0,
            memory=8 << 30,
            images=("busybox:1",),
        )
        reg = registration(kv, engine, rec)
        await reg.register()
        (host,) = await live_hosts(kv, "/test/hosts/")
        assert host.record == rec and host.lease == reg.lease.id
        state = host.record.host_state()
        assert state.device_labels == {"camera"} and state.gpus == 1 and state.cpus == 4.0
        await reg.deregister()
        assert await live_hosts(kv, "/test/hosts/") == []

    engine.run(body)


def test_a_registration_disappears_when_its_lease_expires(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        alive = registration(kv, engine, record("host-a"))
        dying = registration(kv, engine, record("host-b"))
        await alive.register()
        await dying.register()
        changes = aiter(watch_hosts(kv, "/test/hosts/"))
        first = await anext(changes)
        assert sorted(h.record.id for h in first) == ["host-a", "host-b"]
        await dying.deregister(revoke=False)  # the host dies: nobody renews, nobody revokes
        await engine.pass_time(kv, engine.ttl * 1.5, keep=[alive.lease])
        hosts = await asyncio.wait_for(anext(changes), timeout=10)
        assert [h.record.id for h in hosts] == ["host-a"]
        await alive.deregister()
        await dying.deregister()

    engine.run(body)


def test_a_second_live_host_with_the_same_id_is_refused(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        first = registration(kv, engine, record("host-a", "127.0.0.11"))
        await first.register()
        twin = registration(kv, engine, record("host-a", "127.0.0.12"))
        with pytest.raises(DuplicateHost, match=r"host-a .*127\.0\.0\.11"):
            await twin.register()
        (host,) = await live_hosts(kv, "/test/hosts/")
        assert host.record.address == "127.0.0.11"
        await twin.deregister()
        assert len(await live_hosts(kv, "/test/hosts/")) == 1  # the twin removed nothing
        await first.deregister()

    engine.run(body)


def test_a_changed_record_is_published_under_the_same_lease(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        reg = registration(kv, engine, record("host-a"))
        await reg.register()
        changes = aiter(watch_hosts(kv, "/test/hosts/"))
        (before,) = await anext(changes)
        await reg.update(record("host-a", images=("busybox:1", "nginx:1")))
        (after,) = await asyncio.wait_for(anext(changes), timeout=10)
        assert after.record.images == ("busybox:1", "nginx:1")
        assert (after.lease, after.revision) == (before.lease, before.revision)
        await reg.deregister()

    engine.run(body)


def test_a_host_whose_lease_was_lost_registers_again(engine: Engine) -> None:
    async def body(kv: SiteKV) -> None:
        reg = registration(kv, engine, record("host-a"))
        await reg.register()
        old = reg.lease.id
        await kv.revoke(old)  # as when the host was cut off longer than its TTL
        await reg.lease.renew()
        await asyncio.sleep(0.05)
        await asyncio.wait_for(reg.registered.wait(), timeout=10)
        (host,) = await live_hosts(kv, "/test/hosts/")
        assert host.lease == reg.lease.id != old
        await reg.deregister()

    engine.run(body)
