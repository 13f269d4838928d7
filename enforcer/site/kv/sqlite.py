"""The site store on SQLite: the one-host site's engine (one process holds the file).

One file under the state directory (`site-kv.db`), held by one process (a lock file beside
it refuses a second). A store-wide revision counter; per key its
create/mod revisions and version; a change log that watches read, trimmed to the last
`keep_changes` revisions (watching from before that raises `Compacted`); leases whose expiry
(by the injectable `clock`) deletes their keys in one revision. Every operation holds one lock,
so a reader never sees half a write of this process; watchers are woken when a write commits.
Expiry runs in a background task every `expiry_interval` seconds, and at once when a lease is
used or asked about; tests with a fake clock call `expire()` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from enforcer.site.kv.base import (
    Compacted,
    Entry,
    Event,
    EventKind,
    Health,
    InvalidRequest,
    Lease,
    LeaseNotFound,
    SiteKV,
    Unavailable,
    check_key,
    check_ttl,
)

__all__ = ["SqliteKV"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 1), ('compacted', 1);
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER
);
CREATE INDEX IF NOT EXISTS keys_by_lease ON keys (lease);
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    lease INTEGER,
    PRIMARY KEY (revision, seq)
);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl REAL NOT NULL,
    expires REAL NOT NULL
);
"""
ENTRY_COLUMNS = "key, value, create_revision, mod_revision, version, lease"


def _entry(row: Iterable[Any]) -> Entry:
    key, value, create_revision, mod_revision, version, lease = row
    return Entry(key, bytes(value), create_revision, mod_revision, version, lease)


def _probe(path: Path) -> None:
    sqlite3.connect(str(path)).close()


def _lock(path: Path) -> int:
    """Hold `<path>.lock` for this process: one process (one store object) per file."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Unavailable(
            f"the site store {path} is already open (in another enforcer on this host?)"
        ) from None
    return fd


class SqliteKV:
    """The SQLite engine of `enforcer.site.kv.base.SiteKV` (see the module documentation)."""

    engine = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        keep_changes: int = 10_000,
        expiry_interval: float = 0.25,
    ) -> None:
        if keep_changes < 1:
            raise InvalidRequest(f"keep_changes must be at least 1, not {keep_changes}")
        self.path = path
        self.clock = clock
        self.keep_changes = keep_changes
        self.expiry_interval = expiry_interval
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._expiry: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None

    @classmethod
    async def open(cls, path: Path, **options: Any) -> SqliteKV:
        store = cls(path, **options)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            store._lock_fd = _lock(path)
            # Probe first: aiosqlite leaves its thread behind when connecting fails.
            await asyncio.to_thread(_probe, path)
            store._db = await aiosqlite.connect(str(path), isolation_level=None)
            await store._db.execute("PRAGMA journal_mode=WAL")
            await store._db.execute("PRAGMA synchronous=NORMAL")
            await store._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            await store.close()
            raise Unavailable(f"cannot open the site store {path}: {exc}") from exc
        if store.expiry_interval > 0:
            store._expiry = asyncio.create_task(store._expire_forever(), name="site-kv-expiry")
        return store

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            await asyncio.gather(self._expiry, return_exceptions=True)
            self._expiry = None
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None
        self._wake()  # watchers notice the store is closed

    # -- plumbing ------------------------------------------------------------------------
    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise Unavailable(f"the site store {self.path} is closed")
        return self._db

    def _wake(self) -> None:
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                yield self.db
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot read the site store {self.path}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction under the lock; watchers are woken after it commits."""
        async with self._lock:
            db = self.db
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot write the site store {self.path}: {exc}") from exc
            try:
                yield db
                await db.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise Unavailable(f"cannot write the site store {self.path}: {exc}") from exc
                raise
        self._wake()

    async def _meta(self, db: aiosqlite.Connection, name: str) -> int:
        rows = list(await db.execute_fetchall("SELECT value FROM meta WHERE name = ?", (name,)))
        return int(rows[0][0])

    async def _next_revision(self, db: aiosqlite.Connection) -> int:
        revision = await self._meta(db, "revision") + 1
        await db.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))
        await self._compact(db, revision - self.keep_changes + 1)
        return revision

    async def _compact(self, db: aiosqlite.Connection, revision: int) -> None:
        """Forget the changes before `revision` (watching from before it raises Compacted)."""
        if revision > await self._meta(db, "compacted"):
            await db.execute("DELETE FROM changes WHERE revision < ?", (revision,))
            await db.execute("UPDATE meta SET value = ? WHERE name = 'compacted'", (revision,))

    async def _check_lease(self, db: aiosqlite.Connection, lease: int | None) -> None:
        if lease is None:
            return
        rows = list(await db.execute_fetchall("SELECT expires FROM leases WHERE id = ?", (lease,)))
        if not rows or rows[0][0] <= self.clock():
            raise LeaseNotFound(lease)

    async def _get(self, db: aiosqlite.Connection, key: str) -> Entry | None:
        rows = list(
            await db.execute_fetchall(f"SELECT {ENTRY_COLUMNS} FROM keys WHERE key = ?", (key,))
        )
        return _entry(rows[0]) if rows else None

    async def _write_key(
        self, db: aiosqlite.Connection, key: str, value: bytes, lease: int | None
    ) -> int:
        await self._check_lease(db, lease)
        old = await self._get(db, key)
        revision = await self._next_revision(db)
        created = old.create_revision if old else revision
        version = old.version + 1 if old else 1
        await db.execute(
            "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?, ?)",
            (key, value, created, revision, version, lease),
        )
        await db.execute(
            "INSERT INTO changes VALUES (?, 0, 'put', ?, ?, ?, ?)",
            (revision, key, value, created, lease),
        )
        return revision

    async def _delete_where(
        self, db: aiosqlite.Connection, where: str, args: tuple[Any, ...]
    ) -> int:
        keys = [
            r[0] for r in await db.execute_fetchall(f"SELECT key FROM keys WHERE {where}", args)
        ]
        if not keys:
            return 0
        revision = await self._next_revision(db)
        for seq, key in enumerate(sorted(keys)):
            await db.execute("DELETE FROM keys WHERE key = ?", (key,))
            await db.execute(
                "INSERT INTO changes VALUES (?, ?, 'delete', ?, x'', 0, NULL)", (revision, seq, key)
            )
        return len(keys)

    # -- keys ----------------------------------------------------------------------------
    async def get(self, key: str) -> Entry | None:
        check_key(key)
        async with self._reading() as db:
            return await self._get(db, key)

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        async with self._reading() as db:
            rows = await db.execute_fetchall(
                f"SELECT {ENTRY_COLUMNS} FROM keys WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            )
            return [_entry(r) for r in rows], await self._meta(db, "revision")

    async def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        check_key(key)
        async with self._writing() as db:
            return await self._write_key(db, key, value, lease)

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        if not prefix:
            check_key(key)
        async with self._writing() as db:
            if prefix:
                return await self._delete_where(db, "substr(key, 1, ?) = ?", (len(key), key))
            return await self._delete_where(db, "key = ?", (key,))

    async def create(self, key: str, value: bytes, lease: int | None = None) -> int | None:
        check_key(key)
        async with self._writing() as db:
            if await self._get(db, key) is not None:
                return None
            return await self._write_key(db, key, value, lease)

    async def replace(
        self, key: str, value: bytes, expected_mod_revision: int, lease: int | None = None
    ) -> int | None:
        check_key(key)
        async with self._writing() as db:
            old = await self._get(db, key)
            if old is None or old.mod_revision != expected_mod_revision:
                return None
            return await self._write_key(db, key, value, lease)

    # -- leases --------------------------------------------------------------------------
    async def grant(self, ttl: float) -> Lease:
        ttl = check_ttl(ttl)
        async with self._writing() as db:
            cur = await db.execute(
                "INSERT INTO leases (ttl, expires) VALUES (?, ?)", (ttl, self.clock() + ttl)
            )
            return Lease(int(cur.lastrowid or 0), ttl)

    async def keep_alive(self, lease: int) -> float:
        await self.expire()
        async with self._writing() as db:
            await self._check_lease(db, lease)
            rows = list(await db.execute_fetchall("SELECT ttl FROM leases WHERE id = ?", (lease,)))
            ttl = float(rows[0][0])
            await db.execute(
                "UPDATE leases SET expires = ? WHERE id = ?", (self.clock() + ttl, lease)
            )
            return ttl

    async def time_to_live(self, lease: int) -> float | None:
        await self.expire()
        async with self._reading() as db:
            rows = list(
                await db.execute_fetchall("SELECT expires FROM leases WHERE id = ?", (lease,))
            )
            return max(0.0, float(rows[0][0]) - self.clock()) if rows else None

    async def revoke(self, lease: int) -> None:
        async with self._writing() as db:
            await self._end_lease(db, lease)

    async def _end_lease(self, db: aiosqlite.Connection, lease: int) -> None:
        await db.execute("DELETE FROM leases WHERE id = ?", (lease,))
        await self._delete_where(db, "lease = ?", (lease,))

    async def expire(self) -> list[int]:
        """End every lease whose time is up (deleting its keys); their ids."""
        now = self.clock()
        async with self._reading() as db:
            rows = await db.execute_fetchall("SELECT id FROM leases WHERE expires <= ?", (now,))
            due = [int(r[0]) for r in rows]
        if due:
            async with self._writing() as db:
                for lease in due:
                    await self._end_lease(db, lease)  # past its time: not renewable
            log.info("site store: leases %s expired", ", ".join(f"{i:x}" for i in due))
        return due

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(self.expiry_interval)
            try:
                await self.expire()
            except Unavailable as exc:
                log.error("site store: cannot expire leases: %s", exc)

    # -- watch ---------------------------------------------------------------------------
    async def watch(self, prefix: str, from_revision: int) -> AsyncGenerator[Event, None]:
        if from_revision < 1:
            raise InvalidRequest(f"a watch starts at revision 1 or later, not {from_revision}")
        following = from_revision
        while True:
            woken = self._changed  # taken before reading: a later commit sets it
            async with self._reading() as db:
                compacted = await self._meta(db, "compacted")
                if following < compacted:
                    raise Compacted(following, compacted)
                rows = await db.execute_fetchall(
                    "SELECT kind, key, value, revision, create_revision, lease FROM changes"
                    " WHERE revision >= ? AND substr(key, 1, ?) = ? ORDER BY revision, seq",
                    (following, len(prefix), prefix),
                )
                current = await self._meta(db, "revision")
            for kind, key, value, revision, created, lease in rows:
                yield Event(EventKind(kind), key, bytes(value), revision, created, lease)
            following = max(following, current + 1)
            await woken.wait()

    async def compact(self, revision: int) -> None:
        async with self._writing() as db:
            current = await self._meta(db, "revision")
            if revision > current:
                raise InvalidRequest(
                    f"cannot compact at revision {revision}: the store is at {current}"
                )
            await self._compact(db, revision)

    async def health(self) -> Health:
        try:
            async with self._reading() as db:
                revision = await self._meta(db, "revision")
                await db.execute_fetchall("PRAGMA quick_check(1)")
        except Unavailable as exc:
            return Health(False, self.engine, 0, str(exc))
        return Health(True, self.engine, revision, str(self.path))


if TYPE_CHECKING:  # mypy checks that the engine implements the interface
    _IMPLEMENTS: type[SiteKV] = SqliteKV
