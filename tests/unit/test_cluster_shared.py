"""Control's vaults and quotas, received by the site's leader, reach every host through the
site store (`enforcer.site.cluster.shared`), on a real SQLite site store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from enforcer.schedule.quota import Quota
from enforcer.secrets.vaults import SiteVaults
from enforcer.site.cluster import records as keys
from enforcer.site.cluster.shared import SharedRecords
from enforcer.site.kv.sqlite import SqliteKV
from enforcer.site.quotas import SiteQuotas
from enforcer.site.store import Store

QUOTAS = [{"tenant": "acme", "quota": {"cpus": 2}}]


async def host(kv: SqliteKV, root: Path) -> tuple[SharedRecords, Store]:
    store = Store(root / "enforcer.db")
    await store.open()

    async def emit(*args: Any, **kwargs: Any) -> None:
        pass

    vaults = SiteVaults(store, root, emit=emit)
    return SharedRecords(kv, vaults, SiteQuotas(store)), store


async def shared(kv: SqliteKV) -> dict[str, tuple[bytes, int]]:
    entries, _ = await kv.range("/site/")
    return {e.key: (e.value, e.mod_revision) for e in entries if e.key in keys.SHARED}


def test_quotas_from_the_leader_reach_another_host_and_a_stale_copy_is_not_applied(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "site.db")
        leader, leader_store = await host(kv, tmp_path / "h1")
        other, other_store = await host(kv, tmp_path / "h2")
        try:
            await leader.publish_quotas(QUOTAS)
            stale = await shared(kv)  # what the leader's own watch shows a moment later
            assert await other.follow(stale, "site") is True
            assert other.quotas.quotas == (Quota("acme", frozenset({"acme"}), {"cpus": 2.0}),)
            assert await other.follow(stale, "site") is False  # once per value
            # a newer list at the leader; its watch still shows the old one: not applied back
            await leader.publish_quotas([])
            assert await leader.follow(stale, "site") is False
            assert await other.follow(await shared(kv), "site") is True
            assert other.quotas.quotas == ()
            # vaults wait until the host holds the site's key (no identity here yet)
            await leader.publish_vaults([], "local")
            assert await other.follow(await shared(kv), "site") is False
            assert keys.VAULTS not in other.applied
        finally:
            await leader_store.close()
            await other_store.close()
            await kv.close()

    asyncio.run(main())
