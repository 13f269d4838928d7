"""Control's persistent store: an interface, and its SQLite implementation (aiosqlite).

Every method is one transaction, so nothing is stored half-way. The schema is versioned in
``schema_migrations``; `SQLiteStore.open` applies what is missing. A PostgreSQL backend
implements the same `Store` interface.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from control.model import (
    SYSTEM_TENANT,
    AppVersion,
    Conflict,
    Deployment,
    Forbidden,
    NotFound,
    OutOfOrder,
    Site,
    StatusResult,
    Tenant,
)
from control.store.schema import MIGRATIONS
from control.store.sqlite_vaults import VaultRecords
from control.vaults.envelope import Vault

log = logging.getLogger(__name__)

EVENTS_KEPT_PER_SITE = 1000
STATUS_GROUP = 1000  # status batches committed in one transaction at most


class Store(abc.ABC):
    """What control keeps; implementations must make each method atomic."""

    @abc.abstractmethod
    async def open(self) -> None: ...
    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def create_tenant(
        self, name: str, parent: str, now: float, quota: dict[str, float] | None = None
    ) -> Tenant: ...
    @abc.abstractmethod
    async def list_tenants(self) -> list[Tenant]: ...
    @abc.abstractmethod
    async def add_token(
        self, token_hash: str, tenant: str, description: str, now: float
    ) -> None: ...
    @abc.abstractmethod
    async def token_tenant(self, token_hash: str) -> str | None: ...
    @abc.abstractmethod
    async def create_enrollment(
        self, secret_hash: str, site: Site, expires: float, now: float
    ) -> None: ...
    @abc.abstractmethod
    async def consume_enrollment(
        self, secret_hash: str, site: str, serial: str, now: float, public_key: str = ""
    ) -> None: ...
    @abc.abstractmethod
    async def load_sites(self) -> list[Site]: ...
    @abc.abstractmethod
    async def save_site(self, site: Site) -> None: ...
    @abc.abstractmethod
    async def save_revisions(self, changes: Sequence[tuple[str, int, str]]) -> None: ...
    @abc.abstractmethod
    async def save_contacts(self, contacts: Iterable[tuple[str, float]]) -> None: ...
    @abc.abstractmethod
    async def apply_status(
        self, site: Site, seq: int, events: Sequence[Any], now: float
    ) -> StatusResult: ...
    @abc.abstractmethod
    async def site_events(self, site: str, limit: int) -> list[dict[str, Any]]: ...
    @abc.abstractmethod
    async def put_app_version(self, app: AppVersion, keep: int, protected: set[str]) -> bool: ...
    @abc.abstractmethod
    async def app_versions(self, name: str | None = None) -> list[AppVersion]: ...
    @abc.abstractmethod
    async def put_deployment(self, deployment: Deployment) -> None: ...
    @abc.abstractmethod
    async def list_deployments(self) -> list[Deployment]: ...
    @abc.abstractmethod
    async def delete_deployment(self, name: str) -> None: ...
    @abc.abstractmethod
    async def save_rollouts(
        self, rollouts: Sequence[tuple[str, dict[str, Any] | None]]
    ) -> None: ...
    @abc.abstractmethod
    async def set_meta_once(self, key: str, value: bytes) -> bytes: ...
    @abc.abstractmethod
    async def list_vaults(self) -> list[Vault]: ...
    @abc.abstractmethod
    async def put_vault(self, vault: Vault, previous_version: int | None) -> None: ...
    @abc.abstractmethod
    async def delete_vault(self, name: str) -> None: ...
    @abc.abstractmethod
    async def site_vault_key(self, site: str, wrapped: bytes, now: float) -> bytes: ...


_PendingStatus = tuple[Site, int, Sequence[Any], float, "asyncio.Future[StatusResult]"]


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class SQLiteStore(VaultRecords, Store):
    """The store in one SQLite file (WAL), used through one connection and a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._pending_status: list[_PendingStatus] = []
        self._status_writer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._db = await aiosqlite.connect(str(self.path), isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        assert self._db is not None, "the store is not open"
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        assert self._db is not None, "the store is not open"
        async with self._lock, self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _migrate(self) -> None:
        async with self._tx() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied REAL NOT NULL)"
            )
            async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as c:
                row = await c.fetchone()
            current = int(row[0]) if row else 0
            for version, script in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                for statement in script.split(";"):
                    if statement.strip():
                        await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time())
                )
                log.info("applied schema migration %d", version)
            await db.execute(
                "INSERT OR IGNORE INTO tenants (name, parent, created) VALUES (?, NULL, ?)",
                (SYSTEM_TENANT, time.time()),
            )

    # --- tenants and tokens ---------------------------------------------------------------

    async def create_tenant(
        self, name: str, parent: str, now: float, quota: dict[str, float] | None = None
    ) -> Tenant:
        async with self._tx() as db:
            async with db.execute("SELECT 1 FROM tenants WHERE name = ?", (parent,)) as c:
                if await c.fetchone() is None:
                    raise NotFound(f"tenant {parent!r} does not exist")
            async with db.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)) as c:
                if await c.fetchone() is not None:
                    raise Conflict(f"tenant {name!r} already exists")
            await db.execute(
                "INSERT INTO tenants (name, parent, created, quota) VALUES (?, ?, ?, ?)",
                (name, parent, now, _dumps(quota or {})),
            )
        return Tenant(name, parent, now, dict(quota or {}))

    async def list_tenants(self) -> list[Tenant]:
        rows = await self._rows("SELECT name, parent, created, quota FROM tenants ORDER BY name")
        return [Tenant(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    async def add_token(self, token_hash: str, tenant: str, description: str, now: float) -> None:
        async with self._tx() as db:
            async with db.execute("SELECT 1 FROM tenants WHERE name = ?", (tenant,)) as c:
                if await c.fetchone() is None:
                    raise NotFound(f"tenant {tenant!r} does not exist")
            await db.execute(
                "INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?)",
                (token_hash, tenant, now, description),
            )

    async def token_tenant(self, token_hash: str) -> str | None:
        rows = await self._rows("SELECT tenant FROM tokens WHERE hash = ?", (token_hash,))
        return str(rows[0][0]) if rows else None

    # --- enrollment -----------------------------------------------------------------------

    async def create_enrollment(
        self, secret_hash: str, site: Site, expires: float, now: float
    ) -> None:
        async with self._tx() as db:
            await self._write_site(db, site)
            await db.execute(
                "INSERT INTO enrollments VALUES (?, ?, ?, ?, NULL)",
                (secret_hash, site.name, now, expires),
            )

    async def consume_enrollment(
        self, secret_hash: str, site: str, serial: str, now: float, public_key: str = ""
    ) -> None:
        async with self._tx() as db:
            async with db.execute(
                "SELECT site, expires, used FROM enrollments WHERE secret_hash = ?", (secret_hash,)
            ) as c:
                row = await c.fetchone()
            if row is None or row[0] != site:
                raise Forbidden(
                    "the enrollment bundle is not valid: control does not know "
                    "its secret (issue a new one with `edge-control site token`)"
                )
            if row[2] is not None:
                raise Forbidden(
                    f"the enrollment bundle was already used at {_iso(row[2])}; "
                    "a bundle works once (issue a new one)"
                )
            if row[1] < now:
                raise Forbidden(
                    f"the enrollment bundle expired at {_iso(row[1])} (issue a new one)"
                )
            await db.execute(
                "UPDATE enrollments SET used = ? WHERE secret_hash = ?", (now, secret_hash)
            )
            await db.execute(
                "UPDATE sites SET cert_serial = ?, enrolled = ?, revoked = 0, "
                "last_seq = 0, public_key = ? WHERE name = ?",
                (serial, now, public_key, site),
            )

    # --- sites ----------------------------------------------------------------------------

    _SITE_COLUMNS = (
        "name, labels, created, tenants, cert_serial, enrolled, revoked, revision, "
        "digest, last_seq, last_contact, status, status_time, ready, failed, public_key"
    )

    async def load_sites(self) -> list[Site]:
        rows = await self._rows(f"SELECT {self._SITE_COLUMNS} FROM sites ORDER BY name")
        return [
            Site(
                name=r[0],
                labels=json.loads(r[1]),
                created=r[2],
                tenants=json.loads(r[3]),
                cert_serial=r[4],
                enrolled=r[5],
                revoked=bool(r[6]),
                revision=r[7],
                digest=r[8],
                last_seq=r[9],
                last_contact=r[10],
                status=json.loads(r[11]) if r[11] else None,
                status_time=r[12],
                ready=json.loads(r[13]),
                failed=json.loads(r[14]),
                public_key=r[15],
            )
            for r in rows
        ]

    async def _write_site(self, db: aiosqlite.Connection, s: Site) -> None:
        await db.execute(
            f"INSERT OR REPLACE INTO sites ({self._SITE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                s.name,
                _dumps(s.labels),
                s.created,
                _dumps(s.tenants),
                s.cert_serial,
                s.enrolled,
                int(s.revoked),
                s.revision,
                s.digest,
                s.last_seq,
                s.last_contact,
                _dumps(s.status) if s.status is not None else None,
                s.status_time,
                _dumps(s.ready),
                _dumps(s.failed),
                s.public_key,
            ),
        )

    async def save_site(self, site: Site) -> None:
        async with self._tx() as db:
            await self._write_site(db, site)

    async def save_revisions(self, changes: Sequence[tuple[str, int, str]]) -> None:
        async with self._tx() as db:
            await db.executemany(
                "UPDATE sites SET revision = ?, digest = ?, ready = '{}' WHERE name = ?",
                [(r, d, n) for n, r, d in changes],
            )

    async def save_contacts(self, contacts: Iterable[tuple[str, float]]) -> None:
        async with self._tx() as db:
            await db.executemany(
                "UPDATE sites SET last_contact = ? WHERE name = ?", [(t, n) for n, t in contacts]
            )

    async def apply_status(
        self, site: Site, seq: int, events: Sequence[Any], now: float
    ) -> StatusResult:
        """Apply batch `seq` exactly once; `site` already holds the new status to record.

        Batches arriving together are committed together (group commit): a fleet answering
        a change at once costs a few transactions, not one per site.
        """
        future: asyncio.Future[StatusResult] = asyncio.get_running_loop().create_future()
        self._pending_status.append((site, seq, events, now, future))
        if self._status_writer is None or self._status_writer.done():
            self._status_writer = asyncio.create_task(
                self._write_statuses(), name="store-status-writer"
            )
        return await future

    async def _write_statuses(self) -> None:
        while self._pending_status:
            batch, self._pending_status = (
                self._pending_status[:STATUS_GROUP],
                self._pending_status[STATUS_GROUP:],
            )
            try:
                await self._apply_statuses(batch)
            except Exception as e:  # the whole transaction failed: so does every batch in it
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(e)

    async def _apply_statuses(self, batch: list[_PendingStatus]) -> None:
        names = sorted({item[0].name for item in batch})
        async with self._tx() as db:
            last: dict[str, int] = {}
            for i in range(0, len(names), 500):
                chunk = names[i : i + 500]
                marks = ",".join("?" * len(chunk))
                async with db.execute(
                    f"SELECT name, last_seq FROM sites WHERE name IN ({marks})", chunk
                ) as c:
                    last.update({str(r[0]): int(r[1]) for r in await c.fetchall()})
            updates: dict[str, tuple[Any, ...]] = {}
            inserts: list[tuple[str, int, float, str]] = []
            outcomes: list[tuple[asyncio.Future[StatusResult], StatusResult | Exception]] = []
            for site, seq, events, now, future in batch:
                if site.name not in last:
                    outcomes.append((future, NotFound(f"site {site.name!r} does not exist")))
                    continue
                previous = last[site.name]
                if seq <= previous:
                    outcomes.append((future, StatusResult(applied=False, last_seq=previous)))
                    continue
                if seq != previous + 1:
                    outcomes.append(
                        (
                            future,
                            OutOfOrder(
                                f"status batch {seq} is out of order: expected seq {previous + 1}",
                                expected=previous + 1,
                            ),
                        )
                    )
                    continue
                last[site.name] = seq
                updates[site.name] = (
                    seq,
                    _dumps(site.status) if site.status is not None else None,
                    now,
                    _dumps(site.ready),
                    _dumps(site.failed),
                    now,
                    site.name,
                )
                inserts.extend((site.name, seq, now, _dumps(e)) for e in events)
                outcomes.append((future, StatusResult(applied=True, last_seq=seq)))
            await db.executemany(
                "UPDATE sites SET last_seq = ?, status = ?, status_time = ?, ready = ?, "
                "failed = ?, last_contact = ? WHERE name = ?",
                list(updates.values()),
            )
            if inserts:
                await db.executemany(
                    "INSERT INTO site_events (site, seq, received, event) VALUES (?, ?, ?, ?)",
                    inserts,
                )
                trimmed = sorted({row[0] for row in inserts})
                await db.executemany(
                    "DELETE FROM site_events WHERE site = ? AND id <= (SELECT id FROM "
                    "site_events WHERE site = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    [(n, n, EVENTS_KEPT_PER_SITE) for n in trimmed],
                )
        for future, outcome in outcomes:
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def site_events(self, site: str, limit: int) -> list[dict[str, Any]]:
        rows = await self._rows(
            "SELECT seq, received, event FROM site_events WHERE site = ? ORDER BY id DESC LIMIT ?",
            (site, limit),
        )
        return [{"seq": r[0], "received": r[1], "event": json.loads(r[2])} for r in rows[::-1]]

    # --- applications ---------------------------------------------------------------------

    async def put_app_version(self, app: AppVersion, keep: int, protected: set[str]) -> bool:
        """Store a version; False when the same spec is there already. Keeps `keep` versions
        per application (never removing those in `protected`)."""
        async with self._tx() as db:
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
                (app.name, app.version, app.tenant, _dumps(app.document), app.digest, app.created),
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

    async def app_versions(self, name: str | None = None) -> list[AppVersion]:
        sql = "SELECT name, version, tenant, document, digest, created FROM app_versions"
        params: tuple[str, ...] = ()
        if name is not None:
            sql += " WHERE name = ?"
            params = (name,)
        rows = await self._rows(sql + " ORDER BY name, created, rowid", params)
        return [AppVersion(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    # --- deployments ----------------------------------------------------------------------

    async def put_deployment(self, d: Deployment) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT OR REPLACE INTO deployments VALUES (?, ?, ?, ?, ?, ?)",
                (
                    d.name,
                    d.tenant,
                    _dumps(d.document),
                    d.created,
                    d.updated,
                    _dumps(d.rollout) if d.rollout is not None else None,
                ),
            )

    async def list_deployments(self) -> list[Deployment]:
        rows = await self._rows(
            "SELECT name, tenant, document, created, updated, rollout "
            "FROM deployments ORDER BY name"
        )
        return [
            Deployment(r[0], r[1], json.loads(r[2]), r[3], r[4], json.loads(r[5]) if r[5] else None)
            for r in rows
        ]

    async def delete_deployment(self, name: str) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM deployments WHERE name = ?", (name,))

    async def save_rollouts(self, rollouts: Sequence[tuple[str, dict[str, Any] | None]]) -> None:
        async with self._tx() as db:
            await db.executemany(
                "UPDATE deployments SET rollout = ? WHERE name = ?",
                [(_dumps(r) if r is not None else None, n) for n, r in rollouts],
            )


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
