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


class Slow:
    """A site store on a slow disk: listing and writing the assignments take a while (etcd
    under load), so a host's first reads and its leader's first decision come in any order."""

    def __init__(self, kv: SiteKV) -> None:
        self.kv = kv

    def __getattr__(self, name: str) -> Any:
        inner = getattr(self.kv, name)
        if name not in ("range", "create", "replace"):
            return inner

        async def call(key: str, *args: Any, **kwargs: Any) -> Any:
            if name == "range" or key == "/site/assignments":
                await asyncio.sleep(0.3)
            return await inner(key, *args, **kwargs)

        return call


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


def test_a_host_whose_site_is_new_keeps_its_running_instances_until_the_leader_places_them(
    tmp_path: Path,
) -> None:
    """A one-host site becoming its site's first controller: its applications are in the
    store, its containers run. Before the leader has placed them, the host must be told
    nothing (leave the engine be), never "run nothing" (its containers would be removed and
    created again: a restart)."""

    async def body(kv: SiteKV) -> None:
        told: list[frozenset[str] | None] = []
        host = coordinator(cast(SiteKV, Slow(kv)), "host-1")

        async def changed() -> None:
            told.append(host.mine(APPS))

        host.on_change = changed
        await host.seed_apps([record()])  # as the daemon does before it starts following
        await host.start()
        await until(lambda: bool(told and told[-1]))
        assert told[-1] == WEB | {"a.agent.host-1"}
        decided = [m for m in told if m is not None]
        assert all(m == WEB | {"a.agent.host-1"} for m in decided), told
        await host.stop()

    run(tmp_path, body)


def test_a_host_that_leaves_runs_nothing_and_its_instances_move_to_the_others(
    tmp_path: Path,
) -> None:
    async def body(kv: SiteKV) -> None:
        hosts = [coordinator(cast(SiteKV, Flaky(kv)), "host-1"), coordinator(kv, "host-2")]
        for c in hosts:
            await c.start()
        await hosts[1].put_app(record())
        await until(lambda: all(len(mine(c) & WEB) == 1 for c in hosts))
        leaving, staying = hosts
        leaving.set_leaving(True)
        assert leaving.mine(APPS) == frozenset()  # it stops everything at once
        await until(lambda: mine(staying) >= WEB, timeout=TTL + 3)
        assert leaving.assignments is not None and not leaving.assignments.on_host("host-1")
        await leaving.stop(leave=True)
        entry = await kv.get("/site/hosts/host-1")
        assert entry is None  # deregistered at once, not held for a restart
        await until(lambda: "host-1" not in staying.hosts)
        assert "host-1" not in staying.gone_at  # it left: not shown as a dead host
        await staying.stop()

    run(tmp_path, body)
