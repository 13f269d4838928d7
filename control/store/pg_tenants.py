"""Tenants and their API tokens (hashes only) in control's PostgreSQL store."""

from __future__ import annotations

import json

from control.model import Conflict, NotFound, Tenant
from control.store.base import CHANGE_TENANT, TenantRecords
from control.store.pg_db import PgDatabase, changed
from control.store.rows import dumps


class PgTenants(TenantRecords):
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def create(
        self, name: str, parent: str, now: float, quota: dict[str, float] | None = None
    ) -> Tenant:
        async with self.db.tx() as conn:
            if await conn.fetchval("SELECT 1 FROM tenants WHERE name = $1", parent) is None:
                raise NotFound(f"tenant {parent!r} does not exist")
            inserted = await conn.fetchval(
                "INSERT INTO tenants (name, parent, created, quota) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (name) DO NOTHING RETURNING 1",
                name,
                parent,
                now,
                dumps(quota or {}),
            )
            if inserted is None:
                raise Conflict(f"tenant {name!r} already exists")
            await changed(conn, CHANGE_TENANT, [name])
        return Tenant(name, parent, now, dict(quota or {}))

    async def load(self) -> list[Tenant]:
        rows = await self.db.rows("SELECT name, parent, created, quota FROM tenants ORDER BY name")
        return [Tenant(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    async def add_token(self, token_hash: str, tenant: str, description: str, now: float) -> None:
        async with self.db.tx() as conn:
            if await conn.fetchval("SELECT 1 FROM tenants WHERE name = $1", tenant) is None:
                raise NotFound(f"tenant {tenant!r} does not exist")
            await conn.execute(
                "INSERT INTO tokens VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO UPDATE SET "
                "tenant = EXCLUDED.tenant, created = EXCLUDED.created, "
                "description = EXCLUDED.description",
                token_hash,
                tenant,
                now,
                description,
            )

    async def token_tenant(self, token_hash: str) -> str | None:
        rows = await self.db.rows("SELECT tenant FROM tokens WHERE hash = $1", token_hash)
        return str(rows[0][0]) if rows else None
