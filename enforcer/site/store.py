"""The enforcer's durable state in SQLite: applications, restart counts, events, vaults, hosts.

One file under the state directory (`enforcer.db`). Writes are transactions; a failed write
(full disk, read-only file system) raises `StoreError` and leaves the previous state intact.
Vaults are kept only as `enforcer.shared.sealing.encrypt_at_rest` blobs: no secret value is ever
written here in clear.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from enforcer.facade import AppRecord, AppSource, Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS applications (
    name TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    version TEXT NOT NULL,
    source TEXT NOT NULL,
    document TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS restarts (
    container TEXT PRIMARY KEY,
    restarts INTEGER NOT NULL,
    last_exit INTEGER
);
CREATE TABLE IF NOT EXISTS backoff (
    container TEXT PRIMARY KEY,
    streak INTEGER NOT NULL,
    next_retry REAL,
    seen_exit TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    app TEXT NOT NULL,
    instance TEXT NOT NULL,
    tenant TEXT NOT NULL,
    fields TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    role TEXT NOT NULL,
    renewed REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS vaults (
    name TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    version INTEGER NOT NULL,
    unseal TEXT NOT NULL,
    encrypted BLOB NOT NULL,
    updated REAL NOT NULL
);
"""
KEEP_EVENTS = 5000


class StoreError(Exception):
    """The state could not be read or written; str() says what and where."""


@dataclass(frozen=True)
class StoredVault:
    name: str
    tenant: str
    version: int
    unseal: str  # local: under the key in <state-dir>/site/vault.key; remote: control's key
    encrypted: bytes = field(repr=False)  # encrypt_at_rest() under that key


@dataclass(frozen=True)
class HostRecord:
    """A member of the site: the host's id, address, role and when it last renewed its lease."""

    id: str
    address: str
    role: str  # controller: holds the site store; worker: keeps no site state
    renewed: float  # unix time


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(str(self.path))
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._db.executescript(SCHEMA)
            await self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the state database {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the state database is not open")
        return self._db

    async def _write(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        try:
            cur = await self.db.execute(sql, args)
            await self.db.commit()
            return int(cur.lastrowid or 0)
        except sqlite3.Error as exc:
            await self.db.rollback()
            raise StoreError(f"cannot write the state database {self.path}: {exc}") from exc

    # -- applications --------------------------------------------------------------------
    async def applications(self) -> list[AppRecord]:
        rows = await self.db.execute_fetchall(
            "SELECT name, version, tenant, source, document, updated FROM applications"
        )
        return [
            AppRecord(
                name=r[0],
                version=r[1],
                tenant=r[2],
                source=AppSource(r[3]),
                document=json.loads(r[4]),
                updated=r[5],
            )
            for r in rows
        ]

    async def put_application(self, rec: AppRecord) -> None:
        await self._write(
            "INSERT INTO applications (name, version, tenant, source, document, updated) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET version=excluded.version, "
            "tenant=excluded.tenant, source=excluded.source, document=excluded.document, "
            "updated=excluded.updated",
            (
                rec.name,
                rec.version,
                rec.tenant,
                rec.source.value,
                json.dumps(rec.document, sort_keys=True),
                rec.updated,
            ),
        )

    async def delete_application(self, name: str) -> None:
        await self._write("DELETE FROM applications WHERE name = ?", (name,))

    # -- restart counts ------------------------------------------------------------------
    async def restart_counts(self) -> dict[str, tuple[int, int | None]]:
        rows = await self.db.execute_fetchall("SELECT container, restarts, last_exit FROM restarts")
        return {r[0]: (r[1], r[2]) for r in rows}

    async def put_restart_count(self, container: str, restarts: int, last_exit: int | None) -> None:
        await self._write(
            "INSERT INTO restarts (container, restarts, last_exit) VALUES (?, ?, ?) "
            "ON CONFLICT(container) DO UPDATE SET restarts=excluded.restarts, "
            "last_exit=excluded.last_exit",
            (container, restarts, last_exit),
        )

    async def forget_restarts(self, prefix: str) -> None:
        await self._write("DELETE FROM restarts WHERE container LIKE ?", (prefix + "%",))

    # -- crash-loop backoff (kept across enforcer restarts) ----------------------------------
    async def backoffs(self) -> dict[str, tuple[int, float | None, str]]:
        """container -> (crash streak, next retry as unix time, Docker FinishedAt counted)."""
        rows = await self.db.execute_fetchall(
            "SELECT container, streak, next_retry, seen_exit FROM backoff"
        )
        return {r[0]: (int(r[1]), r[2], str(r[3])) for r in rows}

    async def put_backoff(
        self, container: str, streak: int, next_retry: float | None, seen_exit: str
    ) -> None:
        await self._write(
            "INSERT INTO backoff (container, streak, next_retry, seen_exit) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(container) DO UPDATE SET streak=excluded.streak, "
            "next_retry=excluded.next_retry, seen_exit=excluded.seen_exit",
            (container, streak, next_retry, seen_exit),
        )

    async def forget_backoffs(self, prefix: str) -> None:
        await self._write("DELETE FROM backoff WHERE container LIKE ?", (prefix + "%",))

    # -- events --------------------------------------------------------------------------
    async def add_event(
        self,
        kind: str,
        message: str,
        *,
        app: str = "",
        instance: str = "",
        tenant: str = "",
        fields: Mapping[str, Any] | None = None,
    ) -> Event:
        now = time.time()
        seq = await self._write(
            "INSERT INTO events (time, kind, message, app, instance, tenant, fields) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (now, kind, message, app, instance, tenant, json.dumps(dict(fields or {}))),
        )
        if seq % 500 == 0:
            await self._write("DELETE FROM events WHERE seq <= ?", (seq - KEEP_EVENTS,))
        return Event(seq, now, kind, message, app, instance, tenant, dict(fields or {}))

    async def events_since(self, since: int, limit: int = 1000) -> list[Event]:
        rows = await self.db.execute_fetchall(
            "SELECT seq, time, kind, message, app, instance, tenant, fields FROM events "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (since, limit),
        )
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows]

    # -- small values --------------------------------------------------------------------
    async def get(self, key: str) -> str | None:
        rows = list(await self.db.execute_fetchall("SELECT value FROM kv WHERE key = ?", (key,)))
        return str(rows[0][0]) if rows else None

    async def set(self, key: str, value: str) -> None:
        await self._write(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    async def gpu_assignments(self) -> dict[str, tuple[str, ...]]:
        """The GPUs assigned to each instance (instance id -> GPU ids), as last stored."""
        try:
            stored = json.loads(await self.get("gpu-assignments") or "{}")
        except ValueError:
            return {}
        if not isinstance(stored, dict):
            return {}
        return {
            str(iid): tuple(str(g) for g in ids)
            for iid, ids in stored.items()
            if isinstance(ids, list)
        }

    async def put_gpu_assignments(self, gpus: Mapping[str, Sequence[str]]) -> None:
        await self.set("gpu-assignments", json.dumps({k: list(v) for k, v in gpus.items()}))

    # -- vaults (encrypted at rest) ------------------------------------------------------
    async def vaults(self) -> list[StoredVault]:
        rows = await self.db.execute_fetchall(
            "SELECT name, tenant, version, unseal, encrypted FROM vaults ORDER BY name"
        )
        return [StoredVault(r[0], r[1], int(r[2]), r[3], bytes(r[4])) for r in rows]

    async def put_vault(self, vault: StoredVault) -> None:
        await self._write(
            "INSERT INTO vaults (name, tenant, version, unseal, encrypted, updated) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET tenant=excluded.tenant, "
            "version=excluded.version, unseal=excluded.unseal, encrypted=excluded.encrypted, "
            "updated=excluded.updated",
            (vault.name, vault.tenant, vault.version, vault.unseal, vault.encrypted, time.time()),
        )

    async def delete_vault(self, name: str) -> None:
        await self._write("DELETE FROM vaults WHERE name = ?", (name,))

    # -- membership ----------------------------------------------------------------------
    async def put_host(self, host: HostRecord) -> None:
        await self._write(
            "INSERT INTO hosts (id, address, role, renewed) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET address=excluded.address, role=excluded.role, "
            "renewed=excluded.renewed",
            (host.id, host.address, host.role, host.renewed),
        )

    async def hosts(self) -> list[HostRecord]:
        rows = await self.db.execute_fetchall(
            "SELECT id, address, role, renewed FROM hosts ORDER BY id"
        )
        return [HostRecord(r[0], r[1], r[2], float(r[3])) for r in rows]

    # -- health --------------------------------------------------------------------------
    async def check(self) -> str:
        """ "" when the database answers a read of every table, else why not."""
        try:
            for table in ("applications", "events", "kv", "vaults", "hosts"):
                await self.db.execute_fetchall(f"SELECT 1 FROM {table} LIMIT 1")
        except (sqlite3.Error, StoreError, ValueError) as exc:
            return f"cannot read the state database {self.path}: {exc}"
        return ""
