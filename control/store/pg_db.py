"""The PostgreSQL database under control's store parts: a connection pool, transactions,
migrations, and the change rows that tell the other control processes what changed.

Losing the database is not an error of the request: every operation that cannot reach it
raises `StoreUnavailable` (503 with Retry-After), and the pool reconnects when it is back.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import asyncpg

from control.config import describe_database
from control.model import SYSTEM_TENANT
from control.store.base import StoreNotWritten, StoreOpenError, StoreUnavailable
from control.store.schema import MIGRATIONS, check_version, postgres_dialect, statements

log = logging.getLogger(__name__)

POOL_SIZE = 10
CONNECT_TIMEOUT = 10.0
CHANNEL = "edgeward_changes"
# advisory lock keys (one namespace of edgeward's own): migrations, the feed's order, leadership
MIGRATION_LOCK = 0x6564_6777_0001
FEED_LOCK = 0x6564_6777_0002
LEADER_LOCK = 0x6564_6777_0003

# what "the database cannot be reached now" looks like to asyncpg
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)

# what "the database cannot keep this change" looks like: its disk is full, or it is a
# read-only server (a standby promoted by nobody)
NOT_WRITTEN: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DiskFullError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)


class _Batch:
    """The transaction of a `PgDatabase.batch`, begun when first needed."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        self._conn: asyncpg.Connection | None = None
        self._tx: Any = None

    async def connection(self) -> asyncpg.Connection:
        if self._conn is None:
            try:
                conn = await self.db.pool.acquire()
            except UNREACHABLE as e:
                raise unavailable(self.db.where, e) from e
            try:
                tx = conn.transaction()
                await tx.start()
            except BaseException as e:
                await self.db.pool.release(conn)
                if isinstance(e, UNREACHABLE):
                    raise unavailable(self.db.where, e) from e
                raise
            self._conn, self._tx = conn, tx
        return self._conn

    async def finish(self, commit: bool) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        try:
            if commit:
                await self._tx.commit()
            else:
                with contextlib.suppress(*UNREACHABLE):
                    await self._tx.rollback()
        except UNREACHABLE as e:
            raise unavailable(self.db.where, e) from e
        except NOT_WRITTEN as e:
            raise not_written(self.db.where, e) from e
        finally:
            await self.db.pool.release(conn)


# the batch (`PgDatabase.batch`) the running task is in, if any
_batch: ContextVar[_Batch | None] = ContextVar("control_store_batch", default=None)


def unavailable(where: str, e: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"the database ({where}) cannot be reached now: {_reason(e)}")


def not_written(where: str, e: BaseException) -> StoreNotWritten:
    return StoreNotWritten(
        f"the database ({where}) cannot store the change: {_reason(e)}; nothing was changed"
    )


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e).splitlines()[0] if str(e) else type(e).__name__


async def connect(url: str) -> asyncpg.Connection:
    """One connection (for a listener or a lock): StoreUnavailable when it cannot be made."""
    try:
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except UNREACHABLE as e:
        raise unavailable(describe_database(url), e) from e


class PgDatabase:
    """A pool of asyncpg connections to the database named by `url`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = describe_database(url)
        self._pool: asyncpg.Pool | None = None

    async def open(self, migrate: bool = True) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=POOL_SIZE,
                timeout=CONNECT_TIMEOUT,
                max_inactive_connection_lifetime=60.0,
            )
        except asyncpg.InvalidAuthorizationSpecificationError as e:
            raise StoreOpenError(
                f"{self.where}: the server refused the credentials ({_reason(e)})"
            ) from e
        except asyncpg.InvalidCatalogNameError as e:
            raise StoreOpenError(f"{self.where}: no such database ({_reason(e)})") from e
        except UNREACHABLE as e:
            raise StoreOpenError(f"{self.where}: cannot connect: {_reason(e)}") from e
        except asyncpg.PostgresError as e:
            raise StoreOpenError(f"{self.where}: {_reason(e)}") from e
        try:
            if migrate:
                await self.migrate()
            else:
                await self.check_version()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the store is not open"
        return self._pool

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """One transaction for every store call of this task in the block (see `Store.batch`),
        begun by the first call (a block that calls nothing costs nothing); within one
        already, the block joins it."""
        if _batch.get() is not None:
            yield
            return
        batch = _Batch(self)
        token = _batch.set(batch)
        try:
            yield
        except BaseException:
            _batch.reset(token)
            await batch.finish(commit=False)
            raise
        _batch.reset(token)
        await batch.finish(commit=True)

    async def _connection(self) -> asyncpg.Connection | None:
        batch = _batch.get()
        return None if batch is None else await batch.connection()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a write transaction (a savepoint of the task's batch, if any),
        committed when the block ends without an error.

        Writers take the feed lock first: one writing transaction at a time across all control
        processes, so changes commit in the order of their feed positions (a reader never skips
        one that commits late) and row locks are never taken in opposite orders."""
        conn = await self._connection()
        if conn is not None:
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", FEED_LOCK)
                    yield conn
            except UNREACHABLE as e:
                raise unavailable(self.where, e) from e
            except NOT_WRITTEN as e:
                raise not_written(self.where, e) from e
            return
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", FEED_LOCK)
                yield conn
        except UNREACHABLE as e:
            raise unavailable(self.where, e) from e
        except NOT_WRITTEN as e:
            raise not_written(self.where, e) from e

    async def rows(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        try:
            conn = await self._connection()
            if conn is not None:
                return list(await conn.fetch(sql, *params))
            async with self.pool.acquire() as conn:
                return list(await conn.fetch(sql, *params))
        except UNREACHABLE as e:
            raise unavailable(self.where, e) from e

    async def version(self, conn: asyncpg.Connection) -> int:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version BIGINT PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)"
        )
        return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))

    async def check_version(self) -> int:
        async with self.tx() as conn:
            current = await self.version(conn)
        check_version(current, self.where)
        return current

    async def migrate(self) -> list[int]:
        """Apply the migrations the database lacks (one process at a time); which."""
        applied: list[int] = []
        async with self.tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            current = await self.version(conn)
            check_version(current, self.where)
            for version, script in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                for statement in statements(postgres_dialect(script)):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2)", version, time.time()
                )
                applied.append(version)
                log.info("applied schema migration %d to %s", version, self.where)
            await conn.execute(
                "INSERT INTO tenants (name, parent, created) VALUES ($1, NULL, $2) "
                "ON CONFLICT DO NOTHING",
                SYSTEM_TENANT,
                time.time(),
            )
        return applied


async def changed(conn: asyncpg.Connection, kind: str, names: Iterable[str]) -> None:
    """Record that the records `names` of `kind` changed, in the transaction of `conn` (under
    the feed lock `PgDatabase.tx` took)."""
    names = sorted(set(names))
    if not names:
        return
    await conn.execute(
        "INSERT INTO changes (kind, name, at) SELECT $1, unnest($2::text[]), $3",
        kind,
        names,
        time.time(),
    )
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, kind)
