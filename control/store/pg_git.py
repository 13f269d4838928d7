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
from control.store.git_commit import commit_statements, numbered
from control.store.pg_db import PgDatabase, changed

_MARKS = ", ".join(f"${i + 1}" for i in range(len(SOURCE_COLUMNS.split(","))))


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
            for sql, rows in commit_statements(w):
                if rows:
                    await conn.executemany(numbered(sql), rows)
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
