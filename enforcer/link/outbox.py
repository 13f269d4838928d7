"""The sync outbox: events queued for control, the batch in flight, the next seq, the revision.

Kept in ``site/sync.db`` (SQLite), so events queued while control is away survive a restart
and reach control exactly once: a batch keeps its seq and contents until control acknowledges
it. The queue holds at most `MAX_QUEUED_EVENTS`: beyond, the oldest events (not those of the
batch in flight) are dropped and counted, and the next batch starts with one
``events-dropped`` event that says how many. Every SQLite call runs on the outbox's own
thread, one at a time and in the order they were made, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["MAX_EVENTS_PER_BATCH", "MAX_QUEUED_EVENTS", "Batch", "EventQueue"]

log = logging.getLogger(__name__)

MAX_EVENTS_PER_BATCH = 500
MAX_QUEUED_EVENTS = 100_000
T = TypeVar("T")


@dataclass(frozen=True)
class Batch:
    seq: int
    events: list[dict[str, Any]]
    max_id: int  # the last queued event in the batch (0: none)


class EventQueue:
    """The persistent outbox (see the module documentation)."""

    def __init__(self, path: Path, cap: int = MAX_QUEUED_EVENTS) -> None:
        self.path = path
        self.cap = cap
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-outbox")
        self._db: sqlite3.Connection | None = None
        self.revision = 0
        """The last desired-state revision applied (as of `open` and `set_revision`)."""
        self.queued = 0
        """Events waiting for control (as of the last change)."""
        self._closed = False

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # --- on the outbox's thread ---------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS events "
                "(id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._db = db
        return self._db

    def _get(self, key: str, default: int) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    def _set(self, key: str, value: int | str) -> None:
        self._conn().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def _text(self, key: str) -> str:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else ""

    def _count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def _open(self) -> None:
        self.revision = self._get("revision", 0)
        self.queued = self._count()

    def _push(self, body: str) -> None:
        db = self._conn()
        with db:
            db.execute("BEGIN")
            db.execute("INSERT INTO events (body) VALUES (?)", (body,))
            excess = self._count() - self.cap
            if excess > 0:  # drop the oldest events that are not in the batch in flight
                floor = self._get("inflight_max_id", 0)
                dropped = db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events "
                    "WHERE id > ? ORDER BY id LIMIT ?)",
                    (floor, excess),
                ).rowcount
                self._set("dropped", self._get("dropped", 0) + dropped)
                if self._get("dropped", 0) == dropped:  # the first of a run of drops
                    log.warning("control unreachable for long: the outbox is full (%d events), "
                                "dropping the oldest", self.cap)  # fmt: skip
        self.queued = self._count()

    def _pending(self) -> bool:
        return self._get("inflight_seq", 0) > 0 or self._count() > 0 or self._get("dropped", 0) > 0

    def _batch(self, limit: int) -> Batch:
        db = self._conn()
        seq = self._get("inflight_seq", 0)
        if seq:
            max_id = self._get("inflight_max_id", 0)
        else:
            seq = self._get("next_seq", 1)
            with db:
                db.execute("BEGIN")
                dropped = self._get("dropped", 0)
                head = json.dumps(dropped_event(dropped, time.time())) if dropped else ""
                row = db.execute(
                    "SELECT MAX(id) FROM (SELECT id FROM events ORDER BY id LIMIT ?)",
                    (limit - 1 if head else limit,),
                ).fetchone()
                max_id = int(row[0] or 0)
                self._set("inflight_seq", seq)
                self._set("inflight_max_id", max_id)
                self._set("inflight_head", head)
                self._set("dropped", 0)
        rows = db.execute("SELECT body FROM events WHERE id <= ? ORDER BY id", (max_id,)).fetchall()
        head = self._text("inflight_head")
        events = [json.loads(r[0]) for r in rows]
        return Batch(seq, [json.loads(head), *events] if head else events, max_id)

    def _acknowledge(self, batch: Batch) -> None:
        db = self._conn()
        with db:
            db.execute("BEGIN")
            db.execute("DELETE FROM events WHERE id <= ?", (batch.max_id,))
            self._set("next_seq", batch.seq + 1)
            self._set("inflight_seq", 0)
            self._set("inflight_max_id", 0)
            self._set("inflight_head", "")
        self.queued = self._count()

    def _renumber(self, seq: int) -> None:
        db = self._conn()
        with db:
            db.execute("BEGIN")
            self._set("next_seq", seq)
            if self._get("inflight_seq", 0):
                self._set("inflight_seq", seq)

    def _set_revision(self, value: int) -> None:
        self._set("revision", value)
        self.revision = value

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- what the sync client calls -----------------------------------------------------------

    async def open(self) -> None:
        """Read the revision and the number of queued events."""
        await self._call(self._open)

    def push(self, event: Mapping[str, Any]) -> None:
        """Queue `event` (written on the outbox's thread, before anything asked for later)."""
        body = json.dumps(event, separators=(",", ":"), default=str)
        if self._closed:  # stopping: the event stays in the enforcer's own store
            log.debug("the outbox is closed; not queued for control: %s", body)
            return
        self._pool.submit(self._push, body).add_done_callback(_log_failure)

    async def pending(self) -> bool:
        """Whether a batch is in flight or events wait."""
        return await self._call(self._pending)

    async def batch(self, limit: int = MAX_EVENTS_PER_BATCH) -> Batch:
        """The batch to send: the one in flight if any, else a new one fixed from now on."""
        return await self._call(self._batch, limit)

    async def acknowledge(self, batch: Batch) -> None:
        """Control applied `batch`: forget its events and move on to the next seq."""
        await self._call(self._acknowledge, batch)

    async def renumber(self, seq: int) -> None:
        """Control expects `seq` next (our numbering was stale): send the batch in flight as it."""
        await self._call(self._renumber, seq)

    async def set_revision(self, value: int) -> None:
        await self._call(self._set_revision, value)

    async def aclose(self) -> None:
        """Finish what was queued, then close the database."""
        self._closed = True
        await self._call(self._close)
        self._pool.shutdown(wait=False)

    def close(self) -> None:
        """`aclose` for callers outside the event loop (waits for queued writes)."""
        self._closed = True
        self._pool.submit(self._close)
        self._pool.shutdown(wait=True)


def dropped_event(count: int, at: float) -> dict[str, Any]:
    """The event that tells control how many events the full outbox dropped."""
    return {
        "kind": "events-dropped",
        "time": at,
        "message": f"{count} events dropped while control was unreachable (outbox full)",
        "app": "",
        "instance": "",
        "tenant": "",
        "fields": {"count": count},
    }


def _log_failure(done: Future[None]) -> None:
    if done.cancelled():
        return
    exc = done.exception()
    if exc is not None:
        log.error("an event for control was not queued: %s", exc)
