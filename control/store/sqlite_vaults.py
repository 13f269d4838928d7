"""The vault part of control's SQLite store: vaults (encrypted), per-site vault keys, meta.

Every method is one transaction. Only ciphertext and
wrapped keys are written: no secret value ever reaches the database in the clear.
"""

from __future__ import annotations

import json

from control.model import Conflict, NotFound
from control.store.base import VaultRecords
from control.store.sqlite_db import Database
from control.vaults.envelope import Vault

_COLUMNS = "name, tenant, distribute, unseal, version, wrapped_key, blob, keys, created, updated"


class SQLiteVaults(VaultRecords):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def meta(self, key: str) -> bytes | None:
        rows = await self.db.rows("SELECT value FROM control_meta WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    async def set_meta_once(self, key: str, value: bytes) -> bytes:
        """Store `value` under `key` unless there is one already; returns what is stored."""
        async with self.db.tx() as db:
            await db.execute("INSERT OR IGNORE INTO control_meta VALUES (?, ?)", (key, value))
            async with db.execute("SELECT value FROM control_meta WHERE key = ?", (key,)) as c:
                row = await c.fetchone()
        assert row is not None
        return bytes(row[0])

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
        `previous_version`; Conflict when another change came first."""
        async with self.db.tx() as db:
            async with db.execute("SELECT version FROM vaults WHERE name = ?", (vault.name,)) as c:
                row = await c.fetchone()
            if previous_version is None and row is not None:
                raise Conflict(f"vault {vault.name} already exists")
            if previous_version is not None and (row is None or row[0] != previous_version):
                raise Conflict(f"vault {vault.name} changed meanwhile; try again")
            await db.execute(
                f"INSERT OR REPLACE INTO vaults ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
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
                ),
            )

    async def delete(self, name: str) -> None:
        async with self.db.tx() as db:
            cursor = await db.execute("DELETE FROM vaults WHERE name = ?", (name,))
            if cursor.rowcount == 0:
                raise NotFound(f"vault {name} does not exist")

    async def site_key(self, site: str, wrapped: bytes, now: float) -> bytes:
        """The site's wrapped vault key; `wrapped` is stored first when it has none."""
        async with self.db.tx() as db:
            await db.execute(
                "INSERT OR IGNORE INTO site_vault_keys VALUES (?, ?, ?)", (site, wrapped, now)
            )
            async with db.execute(
                "SELECT wrapped FROM site_vault_keys WHERE site = ?", (site,)
            ) as c:
                row = await c.fetchone()
        assert row is not None
        return bytes(row[0])
