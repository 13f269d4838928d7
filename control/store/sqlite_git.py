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
from control.store.git_commit import commit_statements
from control.store.sqlite_db import Database

_MARKS = ", ".join("?" for _ in SOURCE_COLUMNS.split(","))


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
            for sql, rows in commit_statements(w):
                await db.executemany(sql, rows)
