"""The SQLite store: migrations, seq handling, enrollment and immutable versions."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from control.model import AppVersion, Conflict, Forbidden, NotFound, OutOfOrder, Site
from control.store.schema import MIGRATIONS
from control.store.sqlite import SQLiteStore


def with_store(tmp_path: Path, body: Callable[[SQLiteStore], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        store = SQLiteStore(tmp_path / "control.db")
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def site(name: str = "s1") -> Site:
    return Site(name=name, labels={"customer": "acme"}, created=1.0)


def test_opening_twice_applies_each_migration_once(tmp_path: Path) -> None:
    with_store(tmp_path, lambda s: s.tenants.load())
    tenants = with_store(tmp_path, lambda s: s.tenants.load())
    assert [t.name for t in tenants] == ["system"]
    db = sqlite3.connect(tmp_path / "control.db")
    versions = db.execute("SELECT version FROM schema_migrations").fetchall()
    assert versions == [(v,) for v in range(1, len(MIGRATIONS) + 1)]


def test_status_batches_apply_in_order_exactly_once(tmp_path: Path) -> None:
    async def body(store: SQLiteStore) -> None:
        s = site()
        await store.sites.save(s)
        s.status = {"revision": 1, "instances": []}
        assert (await store.sites.apply_status(s, 1, [{"n": 1}], 10.0)).applied
        replay = await store.sites.apply_status(s, 1, [{"n": 1}], 11.0)
        assert not replay.applied and replay.last_seq == 1
        with pytest.raises(OutOfOrder) as info:
            await store.sites.apply_status(s, 3, [{"n": 3}], 12.0)
        assert info.value.details == {"expected": 2}
        assert (await store.sites.apply_status(s, 2, [{"n": 2}, {"n": 2.5}], 13.0)).applied
        events = await store.sites.events("s1", 100)
        assert [e["event"]["n"] for e in events] == [1, 2, 2.5]
        loaded = (await store.sites.load())[0]
        assert loaded.last_seq == 2 and loaded.status == s.status

    with_store(tmp_path, body)


def test_an_enrollment_secret_works_once_and_expires(tmp_path: Path) -> None:
    async def body(store: SQLiteStore) -> None:
        await store.sites.create_enrollment("h1", site(), expires=100.0, now=1.0)
        await store.sites.create_enrollment("h2", site(), expires=100.0, now=1.0)
        with pytest.raises(Forbidden, match="not valid"):
            await store.sites.consume_enrollment("h1", "other-site", "AA", 2.0)
        await store.sites.consume_enrollment("h1", "s1", "AA", 2.0)
        with pytest.raises(Forbidden, match="already used"):
            await store.sites.consume_enrollment("h1", "s1", "BB", 3.0)
        with pytest.raises(Forbidden, match="expired"):
            await store.sites.consume_enrollment("h2", "s1", "BB", 101.0)
        loaded = (await store.sites.load())[0]
        assert loaded.cert_serial == "AA" and loaded.enrolled == 2.0

    with_store(tmp_path, body)


def app(version: str, digest: str, created: float, tenant: str = "system") -> AppVersion:
    return AppVersion(
        "vision", version, tenant, {"name": "vision", "version": version}, digest, created
    )


def test_versions_are_immutable_and_the_last_ones_are_kept(tmp_path: Path) -> None:
    async def body(store: SQLiteStore) -> None:
        assert await store.apps.put_version(app("1", "d1", 1.0), keep=3, protected=set())
        assert not await store.apps.put_version(app("1", "d1", 2.0), keep=3, protected=set())
        with pytest.raises(Conflict, match="immutable"):
            await store.apps.put_version(app("1", "other", 2.0), keep=3, protected=set())
        with pytest.raises(Conflict, match="belongs to tenant"):
            await store.apps.put_version(app("9", "d9", 2.0, "acme"), keep=3, protected=set())
        for n in range(2, 7):
            await store.apps.put_version(app(str(n), f"d{n}", float(n)), keep=3, protected={"1"})
        versions = [a.version for a in await store.apps.versions("vision")]
        assert versions == ["1", "4", "5", "6"]

    with_store(tmp_path, body)


def test_tenants_need_an_existing_parent_and_unique_names(tmp_path: Path) -> None:
    async def body(store: SQLiteStore) -> None:
        await store.tenants.create("acme", "system", 1.0)
        with pytest.raises(Conflict):
            await store.tenants.create("acme", "system", 1.0)
        with pytest.raises(NotFound):
            await store.tenants.create("x", "nope", 1.0)
        await store.tenants.add_token("hash", "acme", "", 1.0)
        assert await store.tenants.token_tenant("hash") == "acme"
        assert await store.tenants.token_tenant("other") is None

    with_store(tmp_path, body)
