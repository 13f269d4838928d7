"""Git sources in control's PostgreSQL store; a commit is applied in one transaction, and the
other control processes learn of it through the change feed."""

from __future__ import annotations

import json

import asyncpg

from control.gitops.source import GitSource
from control.model import Conflict, NotFound
from control.store.base import CHANGE_APP, CHANGE_DEPLOYMENT, CHANGE_GIT, CHANGE_VAULT
from control.store.git import (
    SOURCE_COLUMNS,
    CommitWrite,
    GitRecords,
    source_from_row,
    source_values,
)
from control.store.pg_db import PgDatabase, changed
from control.store.rows import dumps

_MARKS = ", ".join(f"${i + 1}" for i in range(len(SOURCE_COLUMNS.split(","))))
_VAULT_COLUMNS = (
    "name, tenant, distribute, unseal, version, wrapped_key, blob, keys, created, updated"
)


class PgGit(GitRecords):
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def create(self, source: GitSource) -> None:
        async with self.db.tx() as conn:
            try:
                await conn.execute(
                    f"INSERT INTO git_sources ({SOURCE_COLUMNS}) VALUES ({_MARKS})",
                    *source_values(source),
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"git source {source.name} exists") from None
            await changed(conn, CHANGE_GIT, [source.name])

    async def load(self) -> list[GitSource]:
        rows = await self.db.rows(f"SELECT {SOURCE_COLUMNS} FROM git_sources ORDER BY name")
        return [source_from_row(r) for r in rows]

    async def delete(self, name: str) -> None:
        async with self.db.tx() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM git_sources WHERE name = $1 RETURNING 1", name
            )
            if deleted is None:
                raise NotFound(f"git source {name} does not exist")
            await conn.execute("DELETE FROM git_owned WHERE source = $1", name)
            await changed(conn, CHANGE_GIT, [name])

    async def save_state(self, source: GitSource) -> None:
        async with self.db.tx() as conn:
            await conn.execute(
                "UPDATE git_sources SET seen_commit = $1, seen_at = $2, problem = $3, "
                "errors = $4 WHERE name = $5",
                source.seen_commit,
                source.seen_at,
                source.problem,
                json.dumps(source.errors),
                source.name,
            )
            await changed(conn, CHANGE_GIT, [source.name])

    async def owners(self) -> dict[tuple[str, str], str]:
        rows = await self.db.rows("SELECT kind, name, source FROM git_owned")
        return {(r[0], r[1]): r[2] for r in rows}

    async def apply(self, w: CommitWrite) -> None:
        async with self.db.tx() as conn:
            await conn.executemany(
                "DELETE FROM deployments WHERE name = $1", [(n,) for n in w.deployments_removed]
            )
            await conn.executemany(
                "DELETE FROM app_versions WHERE name = $1", [(n,) for n in w.apps_removed]
            )
            await conn.executemany(
                "DELETE FROM app_versions WHERE name = $1 AND version = $2", w.versions_removed
            )
            await conn.executemany(
                "DELETE FROM vaults WHERE name = $1", [(n,) for n in w.vaults_removed]
            )
            await conn.executemany(
                f"INSERT INTO vaults ({_VAULT_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                [
                    (
                        v.name,
                        v.tenant,
                        v.distribute,
                        v.unseal,
                        v.version,
                        v.wrapped_key,
                        v.blob,
                        json.dumps(v.keys, sort_keys=True),
                        v.created,
                        v.updated,
                    )
                    for v in w.vaults_created
                ],
            )
            await conn.executemany(
                "UPDATE vaults SET distribute = $1, unseal = $2, updated = $3 WHERE name = $4",
                [(d, u, w.at, n) for n, d, u in w.vaults_changed],
            )
            await conn.executemany(
                "INSERT INTO app_versions (name, version, tenant, document, digest, created) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (a.name, a.version, a.tenant, dumps(a.document), a.digest, a.created)
                    for a in w.apps
                ],
            )
            await conn.executemany(
                "INSERT INTO deployments (name, tenant, document, created, updated) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET "
                "document = EXCLUDED.document, updated = EXCLUDED.updated",
                [
                    (d.name, d.tenant, dumps(d.document), d.created, d.updated)
                    for d in w.deployments
                ],
            )
            await conn.execute("DELETE FROM git_owned WHERE source = $1", w.source)
            await conn.executemany(
                "INSERT INTO git_owned (kind, name, source) VALUES ($1, $2, $3) "
                "ON CONFLICT (kind, name) DO UPDATE SET source = EXCLUDED.source",
                [(kind, name, w.source) for kind, name in w.owned],
            )
            await conn.execute(
                "UPDATE git_sources SET applied_commit = $1, applied_at = $2, seen_commit = $1, "
                "seen_at = $2, problem = '', errors = '[]' WHERE name = $3",
                w.commit,
                w.at,
                w.source,
            )
            await changed(conn, CHANGE_APP, [*(a.name for a in w.apps), *w.apps_removed])
            await changed(
                conn, CHANGE_DEPLOYMENT, [*(d.name for d in w.deployments), *w.deployments_removed]
            )
            await changed(
                conn,
                CHANGE_VAULT,
                [
                    *(v.name for v in w.vaults_created),
                    *(n for n, _, _ in w.vaults_changed),
                    *w.vaults_removed,
                ],
            )
            await changed(conn, CHANGE_GIT, [w.source])
