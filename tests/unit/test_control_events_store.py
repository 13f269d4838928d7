"""Fleet-wide events and log requests in both control stores: SQLite, and the suite's own
PostgreSQL (a real server, see tests/support/postgres.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from control.fleet.events import EventQuery
from control.model import Site
from control.store.base import Store
from control.store.pg import PgStore
from control.store.schema import MIGRATIONS
from control.store.sqlite import SQLiteStore
from tests.support.postgres import PostgresCluster
from tests.support.postgres import postgres_cluster as postgres_cluster  # the session's server

Body = Callable[[Store], Awaitable[Any]]


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "control.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    url = cluster.new_database("events")
    return lambda: PgStore(url)


def run(make_store: Callable[[], Store], body: Body) -> Any:
    async def main() -> Any:
        store = make_store()
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def event(kind: str, app: str = "", instance: str = "", tenant: str = "", t: float = 1.0) -> Any:
    return {"kind": kind, "time": t, "message": f"{kind} of {instance or app or 'the site'}",
            "app": app, "instance": instance, "tenant": tenant, "fields": {"n": 1}}  # fmt: skip


async def two_sites_with_events(store: Store) -> None:
    for name in ("s1", "s2"):
        await store.sites.save(Site(name=name, labels={}, created=1.0))
    s1, s2 = await store.sites.get(["s1", "s2"])
    await store.sites.apply_status(s1, 1, [
        event("log-error", "web", "web.web.0", "acme", 10.0),
        event("instance-failed", "db", "db.db.0", "acme/shop", 11.0),
    ], 100.0)  # fmt: skip
    await store.sites.apply_status(s2, 1, [
        event("log-error", "web", "web.web.1", "acme", 12.0),
        event("events-dropped", t=13.0),
        event("log-error", "other", "other.x.0", "globex", 14.0),
    ], 200.0)  # fmt: skip


def test_events_list_newest_last_and_filter_by_site_app_and_tenants(
    make_store: Callable[[], Store],
) -> None:
    async def body(store: Store) -> None:
        await two_sites_with_events(store)
        page = await store.events.page(EventQuery())
        assert [e["kind"] for e in page.events] == [
            "log-error", "instance-failed", "log-error", "events-dropped", "log-error",
        ]  # fmt: skip
        first = page.events[0]
        assert first == {
            "id": first["id"], "site": "s1", "received": 100.0, "time": 10.0,
            "kind": "log-error", "app": "web", "instance": "web.web.0", "tenant": "acme",
            "message": "log-error of web.web.0", "fields": {"n": 1},
        }  # fmt: skip
        assert page.last == page.events[-1]["id"]
        newest_two = await store.events.page(EventQuery(limit=2))
        assert [e["time"] for e in newest_two.events] == [13.0, 14.0]
        by_site = await store.events.page(EventQuery(site="s2"))
        assert {e["site"] for e in by_site.events} == {"s2"} and len(by_site.events) == 3
        by_app = await store.events.page(EventQuery(app="web"))
        assert [e["instance"] for e in by_app.events] == ["web.web.0", "web.web.1"]
        by_instance_app = await store.events.page(EventQuery(app="db"))
        assert [e["instance"] for e in by_instance_app.events] == ["db.db.0"]
        tenants = await store.events.page(EventQuery(tenants=frozenset({"acme", "acme/shop"})))
        assert [e["tenant"] for e in tenants.events] == ["acme", "acme/shop", "acme"]
        many = frozenset({"acme", *(f"t{n}" for n in range(40))})  # a large subtree
        assert [
            e["tenant"] for e in (await store.events.page(EventQuery(tenants=many))).events
        ] == ["acme", "acme"]
        nobody = await store.events.page(EventQuery(tenants=frozenset()))
        assert nobody.events == [] and nobody.last == page.last

    run(make_store, body)


def test_after_pages_forward_and_last_skips_what_the_filter_left_out(
    make_store: Callable[[], Store],
) -> None:
    async def body(store: Store) -> None:
        await two_sites_with_events(store)
        everything = await store.events.page(EventQuery())
        ids = [e["id"] for e in everything.events]
        first = await store.events.page(EventQuery(after=0, limit=2))
        assert [e["id"] for e in first.events] == ids[:2] and first.last == ids[1]
        rest = await store.events.page(EventQuery(after=first.last, limit=10))
        assert [e["id"] for e in rest.events] == ids[2:] and rest.last == ids[-1]
        assert (await store.events.page(EventQuery(after=rest.last))).events == []
        # a filter that matches nothing new still moves the follower to the newest row
        globex = await store.events.page(EventQuery(after=0, tenants=frozenset({"none"})))
        assert globex.events == [] and globex.last == ids[-1]

    run(make_store, body)


def test_trim_forgets_events_received_before_a_time(make_store: Callable[[], Store]) -> None:
    async def body(store: Store) -> None:
        await two_sites_with_events(store)
        assert await store.events.trim(150.0) == 2
        left = await store.events.page(EventQuery())
        assert {e["site"] for e in left.events} == {"s2"} and len(left.events) == 3
        assert await store.events.trim(150.0) == 0

    run(make_store, body)


def test_a_log_request_is_handed_out_once_and_answered_once(
    make_store: Callable[[], Store],
) -> None:
    async def body(store: Store) -> None:
        request = {"kind": "logs", "instance": "web.web.0", "container": None, "tail": 10}
        await store.log_requests.add("r1", "s1", request, 100.0)
        await store.log_requests.add("old", "s1", request, 50.0)
        assert await store.log_requests.state("r1") == (None, None)
        assert await store.log_requests.take("s2", 70.0, 101.0) == []
        assert await store.log_requests.take("s1", 70.0, 101.0) == [{"id": "r1", **request}]
        assert await store.log_requests.take("s1", 70.0, 102.0) == []
        assert await store.log_requests.state("r1") == (101.0, None)
        assert not await store.log_requests.reply("r1", "s2", "{}", 70.0, 103.0)  # not its own
        assert not await store.log_requests.reply("old", "s1", "{}", 70.0, 103.0)  # expired
        assert not await store.log_requests.reply("nope", "s1", "{}", 70.0, 103.0)
        assert await store.log_requests.reply("r1", "s1", '{"lines":[]}', 70.0, 103.0)
        assert not await store.log_requests.reply("r1", "s1", "{}", 70.0, 104.0)  # once
        assert await store.log_requests.state("r1") == (101.0, '{"lines":[]}')
        await store.log_requests.forget("r1")
        assert await store.log_requests.state("r1") is None
        # requests far older than any wait are dropped when the next one is kept
        await store.log_requests.add("r2", "s1", request, 1000.0)
        assert await store.log_requests.state("old") is None

    run(make_store, body)


def test_events_stored_before_migration_4_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "control.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied REAL)")
    for version, script in enumerate(MIGRATIONS[:3], start=1):
        db.executescript(script)
        db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
    db.execute(
        "INSERT INTO site_events (site, seq, received, event) VALUES ('s1', 1, 5.0, ?)",
        ('{"kind":"instance-failed","app":"web","instance":"web.web.0","message":"m",'
         '"tenant":"acme","time":4.0,"fields":{}}',),
    )  # fmt: skip
    db.commit()
    db.close()

    async def body(store: Store) -> None:
        page = await store.events.page(EventQuery())
        assert [(e["kind"], e["app"], e["time"], e["tenant"]) for e in page.events] == [
            ("instance-failed", "web", 4.0, "")  # the old row names no tenant: system only
        ]

    run(lambda: SQLiteStore(path), body)
