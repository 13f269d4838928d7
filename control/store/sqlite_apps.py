"""Application versions and deployments in control's SQLite store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from control.model import AppVersion, Conflict, Deployment
from control.store.base import AppRecords, DeploymentRecords
from control.store.rows import deployments_from_rows, dumps
from control.store.sqlite_db import Database


class SQLiteApps(AppRecords):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put_version(self, app: AppVersion, keep: int, protected: set[str]) -> bool:
        """Store a version; False when the same spec is there already. Keeps `keep` versions
        per application (never removing those in `protected`)."""
        async with self.db.tx() as db:
            async with db.execute(
                "SELECT digest, tenant FROM app_versions WHERE name = ? AND version = ?",
                (app.name, app.version),
            ) as c:
                row = await c.fetchone()
            if row is not None:
                if row[0] != app.digest:
                    raise Conflict(
                        f"application {app.name} version {app.version} exists with "
                        "a different spec; versions are immutable, push a new one"
                    )
                return False
            async with db.execute(
                "SELECT tenant FROM app_versions WHERE name = ? LIMIT 1", (app.name,)
            ) as c:
                owner = await c.fetchone()
            if owner is not None and owner[0] != app.tenant:
                raise Conflict(f"application {app.name} belongs to tenant {owner[0]}")
            await db.execute(
                "INSERT INTO app_versions VALUES (?, ?, ?, ?, ?, ?)",
                (app.name, app.version, app.tenant, dumps(app.document), app.digest, app.created),
            )
            async with db.execute(
                "SELECT version FROM app_versions WHERE name = ? ORDER BY created DESC, rowid DESC",
                (app.name,),
            ) as c:
                versions = [str(r[0]) for r in await c.fetchall()]
            old = [v for v in versions[keep:] if v not in protected]
            await db.executemany(
                "DELETE FROM app_versions WHERE name = ? AND version = ?",
                [(app.name, v) for v in old],
            )
        return True

    async def versions(self, name: str | None = None) -> list[AppVersion]:
        sql = "SELECT name, version, tenant, document, digest, created FROM app_versions"
        params: tuple[str, ...] = ()
        if name is not None:
            sql += " WHERE name = ?"
            params = (name,)
        rows = await self.db.rows(sql + " ORDER BY name, created, rowid", params)
        return [AppVersion(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]


class SQLiteDeployments(DeploymentRecords):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, d: Deployment) -> None:
        async with self.db.tx() as db:
            await db.execute(
                "INSERT OR REPLACE INTO deployments VALUES (?, ?, ?, ?, ?, ?)",
                (
                    d.name,
                    d.tenant,
                    dumps(d.document),
                    d.created,
                    d.updated,
                    dumps(d.rollout) if d.rollout is not None else None,
                ),
            )

    async def load(self) -> list[Deployment]:
        rows = await self.db.rows(
            "SELECT name, tenant, document, created, updated, rollout "
            "FROM deployments ORDER BY name"
        )
        return deployments_from_rows(rows)

    async def delete(self, name: str) -> None:
        async with self.db.tx() as db:
            await db.execute("DELETE FROM deployments WHERE name = ?", (name,))

    async def save_rollouts(self, rollouts: Sequence[tuple[str, dict[str, Any] | None]]) -> None:
        async with self.db.tx() as db:
            await db.executemany(
                "UPDATE deployments SET rollout = ? WHERE name = ?",
                [(dumps(r) if r is not None else None, n) for n, r in rollouts],
            )
