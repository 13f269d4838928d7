"""Git sources in control's SQLite store; a commit is applied in one transaction."""

from __future__ import annotations

import json

import aiosqlite

from control.gitops.source import GitSource
from control.model import Conflict, NotFound
from control.store.git import (
    SOURCE_COLUMNS,
    CommitWrite,
    GitRecords,
    source_from_row,
    source_values,
)
from control.store.rows import dumps
from control.store.sqlite_db import Database

_MARKS = ", ".join("?" for _ in SOURCE_COLUMNS.split(","))
_VAULT_COLUMNS = (
    "name, tenant, distribute, unseal, version, wrapped_key, blob, keys, created, updated"
)


class SQLiteGit(GitRecords):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, source: GitSource) -> None:
        async with self.db.tx() as db:
            try:
                await db.execute(
                    f"INSERT INTO git_sources ({SOURCE_COLUMNS}) VALUES ({_MARKS})",
                    source_values(source),
                )
            except aiosqlite.IntegrityError:
                raise Conflict(f"git source {source.name} exists") from None

    async def load(self) -> list[GitSource]:
        rows = await self.db.rows(f"SELECT {SOURCE_COLUMNS} FROM git_sources ORDER BY name")
        return [source_from_row(r) for r in rows]

    async def delete(self, name: str) -> None:
        async with self.db.tx() as db:
            cursor = await db.execute("DELETE FROM git_sources WHERE name = ?", (name,))
            if cursor.rowcount == 0:
                raise NotFound(f"git source {name} does not exist")
            await db.execute("DELETE FROM git_owned WHERE source = ?", (name,))

    async def save_state(self, source: GitSource) -> None:
        async with self.db.tx() as db:
            await db.execute(
                "UPDATE git_sources SET seen_commit = ?, seen_at = ?, problem = ?, errors = ? "
                "WHERE name = ?",
                (
                    source.seen_commit,
                    source.seen_at,
                    source.problem,
                    json.dumps(source.errors),
                    source.name,
                ),
            )

    async def owners(self) -> dict[tuple[str, str], str]:
        rows = await self.db.rows("SELECT kind, name, source FROM git_owned")
        return {(r[0], r[1]): r[2] for r in rows}

    async def apply(self, w: CommitWrite) -> None:
        async with self.db.tx() as db:
            await db.executemany(
                "DELETE FROM deployments WHERE name = ?", [(n,) for n in w.deployments_removed]
            )
            await db.executemany(
                "DELETE FROM app_versions WHERE name = ?", [(n,) for n in w.apps_removed]
            )
            await db.executemany(
                "DELETE FROM app_versions WHERE name = ? AND version = ?", w.versions_removed
            )
            await db.executemany(
                "DELETE FROM vaults WHERE name = ?", [(n,) for n in w.vaults_removed]
            )
            await db.executemany(
                f"INSERT INTO vaults ({_VAULT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            await db.executemany(
                "UPDATE vaults SET distribute = ?, unseal = ?, updated = ? WHERE name = ?",
                [(d, u, w.at, n) for n, d, u in w.vaults_changed],
            )
            await db.executemany(
                "INSERT INTO app_versions (name, version, tenant, document, digest, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (a.name, a.version, a.tenant, dumps(a.document), a.digest, a.created)
                    for a in w.apps
                ],
            )
            await db.executemany(
                "INSERT INTO deployments (name, tenant, document, created, updated) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "document = excluded.document, updated = excluded.updated",
                [
                    (d.name, d.tenant, dumps(d.document), d.created, d.updated)
                    for d in w.deployments
                ],
            )
            await db.execute("DELETE FROM git_owned WHERE source = ?", (w.source,))
            await db.executemany(
                "INSERT OR REPLACE INTO git_owned (kind, name, source) VALUES (?, ?, ?)",
                [(kind, name, w.source) for kind, name in w.owned],
            )
            await db.execute(
                "UPDATE git_sources SET applied_commit = ?, applied_at = ?, seen_commit = ?, "
                "seen_at = ?, problem = '', errors = '[]' WHERE name = ?",
                (w.commit, w.at, w.commit, w.at, w.source),
            )
