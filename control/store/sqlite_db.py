"""The SQLite database under control's store parts: one connection, transactions, migrations.

The schema is versioned in ``schema_migrations``; `Database.open` applies what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from control.model import SYSTEM_TENANT
from control.store.base import StoreNotWritten
from control.store.schema import MIGRATIONS, check_version, statements

log = logging.getLogger(__name__)

# SQLite's primary result codes of a write the storage refused: READONLY, IOERR, FULL
NOT_WRITTEN = frozenset({8, 10, 13})


def _errorcode(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0)) & 0xFF


async def _rollback(db: aiosqlite.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):  # "no transaction is active"
        await db.execute("ROLLBACK")


class Database:
    """One aiosqlite connection, used under a lock: a transaction or a query at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        self._db = await aiosqlite.connect(str(self.path), isolation_level=None)
        try:
            await self._setup()
        except BaseException:
            await self.close()
            raise

    async def _setup(self) -> None:
        assert self._db is not None
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction; a write the disk refuses raises `StoreNotWritten` (rolled back)."""
        assert self._db is not None, "the store is not open"
        db = self._db
        async with self._lock:
            try:
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException as exc:
                await _rollback(db)  # after a failed COMMIT too (SQLite may have rolled back)
                if isinstance(exc, sqlite3.Error) and _errorcode(exc) in NOT_WRITTEN:
                    raise StoreNotWritten(
                        f"control's database {self.path} cannot be written: {exc}; nothing "
                        "was changed"
                    ) from exc
                raise

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        assert self._db is not None, "the store is not open"
        async with self._lock, self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _migrate(self) -> None:
        async with self.tx() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied REAL NOT NULL)"
            )
            async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as c:
                row = await c.fetchone()
            current = int(row[0]) if row else 0
            check_version(current, str(self.path))
            for version, script in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                for statement in statements(script):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time())
                )
                log.info("applied schema migration %d", version)
            await db.execute(
                "INSERT OR IGNORE INTO tenants (name, parent, created) VALUES (?, NULL, ?)",
                (SYSTEM_TENANT, time.time()),
            )
