"""Application versions and deployments in control's PostgreSQL store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from control.model import AppVersion, Conflict, Deployment
from control.store.base import CHANGE_APP, CHANGE_DEPLOYMENT, AppRecords, DeploymentRecords
from control.store.pg_db import PgDatabase, changed
from control.store.rows import deployments_from_rows, dumps


class PgApps(AppRecords):
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def put_version(self, app: AppVersion, keep: int, protected: set[str]) -> bool:
        """Store a version; False when the same spec is there already. Keeps `keep` versions
        per application (never removing those in `protected`)."""
        async with self.db.tx() as conn:
            # one writer per application at a time: its owner and its versions stay consistent
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", app.name)
            row = await conn.fetchrow(
                "SELECT digest FROM app_versions WHERE name = $1 AND version = $2",
                app.name,
                app.version,
            )
            if row is not None:
                if row[0] != app.digest:
                    raise Conflict(
                        f"application {app.name} version {app.version} exists with "
                        "a different spec; versions are immutable, push a new one"
                    )
                return False
            owner = await conn.fetchval(
                "SELECT tenant FROM app_versions WHERE name = $1 LIMIT 1", app.name
            )
            if owner is not None and owner != app.tenant:
                raise Conflict(f"application {app.name} belongs to tenant {owner}")
            await conn.execute(
                "INSERT INTO app_versions VALUES ($1, $2, $3, $4, $5, $6)",
                app.name,
                app.version,
                app.tenant,
                dumps(app.document),
                app.digest,
                app.created,
            )
            versions = [
                str(r[0])
                for r in await conn.fetch(
                    "SELECT version FROM app_versions WHERE name = $1 "
                    "ORDER BY created DESC, version DESC",
                    app.name,
                )
            ]
            old = [v for v in versions[keep:] if v not in protected]
            await conn.executemany(
                "DELETE FROM app_versions WHERE name = $1 AND version = $2",
                [(app.name, v) for v in old],
            )
            await changed(conn, CHANGE_APP, [app.name])
        return True

    async def versions(self, name: str | None = None) -> list[AppVersion]:
        sql = "SELECT name, version, tenant, document, digest, created FROM app_versions"
        params: tuple[str, ...] = ()
        if name is not None:
            sql += " WHERE name = $1"
            params = (name,)
        rows = await self.db.rows(sql + " ORDER BY name, created, version", *params)
        return [AppVersion(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]


class PgDeployments(DeploymentRecords):
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def put(self, d: Deployment) -> None:
        async with self.db.tx() as conn:
            await conn.execute(
                "INSERT INTO deployments VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (name) DO UPDATE SET tenant = EXCLUDED.tenant, "
                "document = EXCLUDED.document, created = EXCLUDED.created, "
                "updated = EXCLUDED.updated, rollout = EXCLUDED.rollout",
                d.name,
                d.tenant,
                dumps(d.document),
                d.created,
                d.updated,
                dumps(d.rollout) if d.rollout is not None else None,
            )
            await changed(conn, CHANGE_DEPLOYMENT, [d.name])

    async def load(self) -> list[Deployment]:
        rows = await self.db.rows(
            "SELECT name, tenant, document, created, updated, rollout "
            "FROM deployments ORDER BY name"
        )
        return deployments_from_rows(rows)

    async def delete(self, name: str) -> None:
        async with self.db.tx() as conn:
            await conn.execute("DELETE FROM deployments WHERE name = $1", name)
            await changed(conn, CHANGE_DEPLOYMENT, [name])

    async def save_rollouts(self, rollouts: Sequence[tuple[str, dict[str, Any] | None]]) -> None:
        async with self.db.tx() as conn:
            await conn.executemany(
                "UPDATE deployments SET rollout = $1 WHERE name = $2",
                [(dumps(r) if r is not None else None, n) for n, r in rollouts],
            )
            await changed(conn, CHANGE_DEPLOYMENT, [n for n, _ in rollouts])
