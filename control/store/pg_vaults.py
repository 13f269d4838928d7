"""The vault part of control's PostgreSQL store: vaults (encrypted), per-site vault keys, meta.

Only ciphertext and wrapped keys are written: no secret value reaches the database in the clear.
"""

from __future__ import annotations

import json

import asyncpg

from control.model import Conflict, NotFound
from control.store.base import CHANGE_VAULT, VaultRecords
from control.store.pg_db import PgDatabase, changed
from control.vaults.envelope import Vault

_COLUMNS = "name, tenant, distribute, unseal, version, wrapped_key, blob, keys, created, updated"


class PgVaults(VaultRecords):
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def meta(self, key: str) -> bytes | None:
        rows = await self.db.rows("SELECT value FROM control_meta WHERE key = $1", key)
        return bytes(rows[0][0]) if rows else None

    async def set_meta_once(self, key: str, value: bytes) -> bytes:
        """Store `value` under `key` unless there is one already; returns what is stored."""
        async with self.db.tx() as conn:
            await conn.execute(
                "INSERT INTO control_meta VALUES ($1, $2) ON CONFLICT DO NOTHING", key, value
            )
            stored = await conn.fetchval("SELECT value FROM control_meta WHERE key = $1", key)
        return bytes(stored)

    async def load(self) -> list[Vault]:
        rows = await self.db.rows(f"SELECT {_COLUMNS} FROM vaults ORDER BY name")
        return [
            Vault(
                name=r[0],
                tenant=r[1],
                distribute=r[2],
                unseal=r[3],
                version=r[4],
                wrapped_key=bytes(r[5]),
                blob=bytes(r[6]),
                keys=json.loads(r[7]),
                created=r[8],
                updated=r[9],
            )
            for r in rows
        ]

    async def put(self, vault: Vault, previous_version: int | None) -> None:
        """Create (`previous_version` None) or replace a vault whose stored version is
        `previous_version`; Conflict when another change, through any process, came first."""
        async with self.db.tx() as conn:
            stored = await conn.fetchval(
                "SELECT version FROM vaults WHERE name = $1 FOR UPDATE", vault.name
            )
            if previous_version is None and stored is not None:
                raise Conflict(f"vault {vault.name} already exists")
            if previous_version is not None and stored != previous_version:
                raise Conflict(f"vault {vault.name} changed meanwhile; try again")
            values = (
                vault.name,
                vault.tenant,
                vault.distribute,
                vault.unseal,
                vault.version,
                vault.wrapped_key,
                vault.blob,
                json.dumps(vault.keys, sort_keys=True),
                vault.created,
                vault.updated,
            )
            try:
                await conn.execute(
                    f"INSERT INTO vaults ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                    "$9, $10) ON CONFLICT (name) DO UPDATE SET tenant = EXCLUDED.tenant, "
                    "distribute = EXCLUDED.distribute, unseal = EXCLUDED.unseal, "
                    "version = EXCLUDED.version, wrapped_key = EXCLUDED.wrapped_key, "
                    "blob = EXCLUDED.blob, keys = EXCLUDED.keys, created = EXCLUDED.created, "
                    "updated = EXCLUDED.updated",
                    *values,
                )
            except asyncpg.UniqueViolationError as e:  # created at the same time elsewhere
                raise Conflict(f"vault {vault.name} already exists") from e
            await changed(conn, CHANGE_VAULT, [vault.name])

    async def delete(self, name: str) -> None:
        async with self.db.tx() as conn:
            deleted = await conn.fetchval("DELETE FROM vaults WHERE name = $1 RETURNING 1", name)
            if deleted is None:
                raise NotFound(f"vault {name} does not exist")
            await changed(conn, CHANGE_VAULT, [name])

    async def site_key(self, site: str, wrapped: bytes, now: float) -> bytes:
        """The site's wrapped vault key; `wrapped` is stored first when it has none."""
        async with self.db.tx() as conn:
            await conn.execute(
                "INSERT INTO site_vault_keys VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                site,
                wrapped,
                now,
            )
            stored = await conn.fetchval(
                "SELECT wrapped FROM site_vault_keys WHERE site = $1", site
            )
        return bytes(stored)
