"""Tenants and their API tokens (hashes only) in control's SQLite store."""

from __future__ import annotations

import json

from control.model import Conflict, NotFound, Tenant
from control.store.base import TenantRecords
from control.store.rows import dumps
from control.store.sqlite_db import Database


class SQLiteTenants(TenantRecords):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, name: str, parent: str, now: float, quota: dict[str, float] | None = None
    ) -> Tenant:
        async with self.db.tx() as db:
            async with db.execute("SELECT 1 FROM tenants WHERE name = ?", (parent,)) as c:
                if await c.fetchone() is None:
                    raise NotFound(f"tenant {parent!r} does not exist")
            async with db.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)) as c:
                if await c.fetchone() is not None:
                    raise Conflict(f"tenant {name!r} already exists")
            await db.execute(
                "INSERT INTO tenants (name, parent, created, quota) VALUES (?, ?, ?, ?)",
                (name, parent, now, dumps(quota or {})),
            )
        return Tenant(name, parent, now, dict(quota or {}))

    async def load(self) -> list[Tenant]:
        rows = await self.db.rows("SELECT name, parent, created, quota FROM tenants ORDER BY name")
        return [Tenant(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    async def add_token(self, token_hash: str, tenant: str, description: str, now: float) -> None:
        async with self.db.tx() as db:
            async with db.execute("SELECT 1 FROM tenants WHERE name = ?", (tenant,)) as c:
                if await c.fetchone() is None:
                    raise NotFound(f"tenant {tenant!r} does not exist")
            await db.execute(
                "INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?)",
                (token_hash, tenant, now, description),
            )

    async def token_tenant(self, token_hash: str) -> str | None:
        rows = await self.db.rows("SELECT tenant FROM tokens WHERE hash = ?", (token_hash,))
        return str(rows[0][0]) if rows else None
