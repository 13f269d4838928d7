"""Control's store in PostgreSQL (asyncpg), where several control processes share one database.

Besides the record parts, it has the change feed (rows in ``changes``, each commit announced by
NOTIFY on a dedicated connection) and the leadership lock (a session advisory lock on another
dedicated connection: it is let go when the process or its connection dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from control.store.base import Change, ChangeFeed, Leadership, Store, StoreUnavailable
from control.store.pg_apps import PgApps, PgDeployments
from control.store.pg_db import CHANNEL, LEADER_LOCK, PgDatabase, connect
from control.store.pg_events import PgEvents, PgLogRequests
from control.store.pg_git import PgGit
from control.store.pg_sites import PgSites
from control.store.pg_tenants import PgTenants
from control.store.pg_vaults import PgVaults

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0
HEALTH_SECONDS = 1.0


_LOST: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
)


class PgFeed(ChangeFeed):
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def latest(self) -> int:
        rows = await self.db.rows("SELECT COALESCE(MAX(id), 0) FROM changes")
        return int(rows[0][0])

    async def since(self, after: int, limit: int) -> list[Change]:
        rows = await self.db.rows(
            "SELECT id, kind, name FROM changes WHERE id > $1 ORDER BY id LIMIT $2", after, limit
        )
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def trim(self, before: float) -> int:
        # the newest row stays: the feed's position never goes back
        rows = await self.db.rows(
            "WITH gone AS (DELETE FROM changes WHERE at < $1 AND id < "
            "(SELECT MAX(id) FROM changes) RETURNING 1) SELECT count(*) FROM gone",
            before,
        )
        return int(rows[0][0])

    async def listen(self, wake: Callable[[bool], None]) -> None:
        def notified(*_: object) -> None:
            wake(False)

        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self.db.url)
                await conn.add_listener(CHANNEL, notified)
                wake(True)  # anything committed while nobody listened
                while True:
                    await asyncio.sleep(HEALTH_SECONDS)
                    await conn.fetchval("SELECT 1")
            except _LOST as e:
                log.warning("listening for changes from other control processes: %s", e)
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(RECONNECT_SECONDS)


class PgLeadership(Leadership):
    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        self.held = False

    def _set(self, held: bool, changed: Callable[[bool], None]) -> None:
        if held != self.held:
            self.held = held
            changed(held)

    async def run(self, changed: Callable[[bool], None]) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self.db.url)
                while True:
                    if not self.held:
                        got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK)
                        self._set(bool(got), changed)
                    else:
                        await conn.fetchval("SELECT 1")
                    await asyncio.sleep(HEALTH_SECONDS)
            except _LOST as e:
                log.warning("the leadership lock's connection: %s", e)
            finally:
                self._set(False, changed)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(RECONNECT_SECONDS)


class PgStore(Store):
    """The store in one PostgreSQL database: its parts share one pool."""

    def __init__(self, url: str) -> None:
        self.db = PgDatabase(url)
        self.tenants = PgTenants(self.db)
        self.sites = PgSites(self.db)
        self.apps = PgApps(self.db)
        self.deployments = PgDeployments(self.db)
        self.vaults = PgVaults(self.db)
        self.git = PgGit(self.db)
        self.events = PgEvents(self.db)
        self.log_requests = PgLogRequests(self.db)
        self.feed = PgFeed(self.db)
        self.leadership = PgLeadership(self.db)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    def batch(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.db.batch()

    async def schema_version(self) -> int:
        return await self.db.check_version()
