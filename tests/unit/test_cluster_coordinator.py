"""Hosts of a multi-host site, each a `Coordinator`, on one site store (SQLite, real time):
the leader assigns every instance once, a host cut off from the store fences itself before the
others take its instances over, and a host that returns runs what is still its own."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from enforcer.facade import AppRecord, AppSource
from enforcer.shared.spec.model import Application
from enforcer.shared.spec.parse import parse_application
from enforcer.site.cluster.coordinator import Coordinator
from enforcer.site.kv.base import Event, SiteKV, Unavailable
from enforcer.site.kv.registry import HostRecord
from enforcer.site.kv.sqlite import SqliteKV
from tests.support.apps import app, sleeper

TTL = 2.0
DOC = app(
    "a",
    sleeper("web", "registry.example:5000/img:1", replicas=2),
    sleeper("agent", "registry.example:5000/img:1", mode="one-per-matching-host"),
)
APPS: dict[str, Application] = {"a": parse_application(DOC)}
WEB = {"a.web.0", "a.web.1"}


class Flaky:
    """A site store that can be cut off: every call raises Unavailable while `down`."""

    def __init__(self, kv: SiteKV) -> None:
        self.kv = kv
        self.down = False

    def __getattr__(self, name: str) -> Any:
        inner = getattr(self.kv, name)
        if name == "watch":
            return self._watch
        if not callable(inner):
            return inner

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise Unavailable("the site store cannot be reached (cut off)")
            return await inner(*args, **kwargs)

        return call

    async def _watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        if self.down:
            raise Unavailable("the site store cannot be reached (cut off)")
        async for event in self.kv.watch(prefix, from_revision):
            if self.down:
                raise Unavailable("the site store cannot be reached (cut off)")
            yield event

    async def close(self) -> None:
        pass  # the shared store is closed by the test


def coordinator(kv: SiteKV, host: str) -> Coordinator:
    async def changed() -> None:
        pass

    def statuses() -> list[dict[str, Any]]:
        return [{"id": i, "host": host} for i in sorted(c.mine(APPS) or ())]

    c = Coordinator(
        kv, HostRecord(host, f"127.0.0.{host[-1]}"), ttl=TTL, on_change=changed, statuses=statuses
    )
    return c


async def until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


def run(tmp_path: Path, body: Callable[[SqliteKV], Awaitable[None]]) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "site.db", expiry_interval=0.05)
        try:
            await asyncio.wait_for(body(kv), timeout=40)
        finally:
            await kv.close()

    asyncio.run(main())


def record() -> AppRecord:
    return AppRecord("a", "1", "system", AppSource.LOCAL, DOC, 0.0)


def mine(c: Coordinator) -> frozenset[str]:
    return c.mine(APPS) or frozenset()


def test_the_leader_assigns_each_instance_to_one_host_and_each_runs_only_its_own(
    tmp_path: Path,
) -> None:
    async def body(kv: SiteKV) -> None:
        hosts = [coordinator(kv, "host-1"), coordinator(kv, "host-2")]
        assert hosts[0].mine(APPS) is None  # nothing is known yet: leave the engine be
        for c in hosts:
            await c.start()
        await hosts[1].put_app(record())
        await until(lambda: all(len(mine(c) & WEB) == 1 for c in hosts))
        one, two = (mine(c) for c in hosts)
        assert one | two == WEB | {"a.agent.host-1", "a.agent.host-2"} and not one & two
        assert sum(c.leading for c in hosts) == 1
        deadline = time.monotonic() + 3  # each host writes its instances' status back
        while True:
            written = await kv.get("/site/status/host-1")
            shown = {s["id"] for s in json.loads(written.value)} if written else set()
            if shown == one or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert shown == one and written is not None and written.lease is not None
        site, leader = await hosts[1].view()
        assert leader in ("host-1", "host-2")
        assert [(h["id"], h["state"]) for h in site] == [("host-1", "alive"), ("host-2", "alive")]
        for c in hosts:
            await c.stop()

    run(tmp_path, body)


def test_a_cut_off_host_fences_before_its_instances_start_elsewhere_and_adopts_on_return(
    tmp_path: Path,
) -> None:
    async def body(kv: SiteKV) -> None:
        flaky = Flaky(kv)
        cut = coordinator(cast(SiteKV, flaky), "host-1")
        other = coordinator(kv, "host-2")
        for c in (cut, other):
            await c.start()
        await other.put_app(record())
        await until(lambda: all(len(mine(c) & WEB) == 1 for c in (cut, other)))
        ours = next(iter(mine(cut) & WEB))
        flaky.down = True
        cut_at = time.monotonic()
        await until(lambda: cut.fenced, timeout=TTL + 1)
        fenced_at = time.monotonic()
        assert mine(cut) == {"a.agent.host-1"}  # its replicated instance is stopped
        expires = cut.registration.lease.must_have_expired_at
        assert fenced_at < expires, f"fenced {fenced_at - cut_at:.2f}s after the cut, too late"
        assert ours not in mine(other)  # not yet: the lease has not expired
        await until(lambda: ours in mine(other), timeout=TTL + 3)
        assert mine(other) >= WEB  # both replicas run on the live host now
        flaky.down = False  # back: it registers again, reads what is its own now
        await until(lambda: not cut.fenced, timeout=TTL + 3)
        assert not mine(cut) & WEB, "a returning host must not restart what moved"
        assert "a.agent.host-1" in mine(cut)
        for c in (cut, other):
            await c.stop()

    run(tmp_path, body)
