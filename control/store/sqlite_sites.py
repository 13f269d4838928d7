"""Sites in control's SQLite store: enrollment secrets, site records, status batches, events.

Status batches arriving together are committed together (group commit): a fleet answering a
change at once costs a few transactions, not one per site.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from control.model import Site, StatusResult
from control.store.base import SiteRecords
from control.store.group_commit import EVENT_INSERT_COLUMNS, GroupCommit, PendingStatus, plan_group
from control.store.rows import (
    EVENTS_KEPT_PER_SITE,
    SITE_COLUMNS,
    check_enrollment_row,
    dumps,
    sites_from_rows,
)
from control.store.sqlite_db import Database


class SQLiteSites(SiteRecords):
    def __init__(self, db: Database) -> None:
        self.db = db
        self._statuses = GroupCommit(self._apply_statuses)

    # --- enrollment -----------------------------------------------------------------------

    async def create_enrollment(
        self, secret_hash: str, site: Site, expires: float, now: float
    ) -> None:
        async with self.db.tx() as db:
            await self._write(db, site)
            await db.execute(
                "INSERT INTO enrollments VALUES (?, ?, ?, ?, NULL)",
                (secret_hash, site.name, now, expires),
            )

    async def check_enrollment(self, secret_hash: str, site: str, now: float) -> None:
        rows = await self.db.rows(
            "SELECT site, expires, used FROM enrollments WHERE secret_hash = ?", (secret_hash,)
        )
        check_enrollment_row(rows[0] if rows else None, site, now)

    async def consume_enrollment(
        self, secret_hash: str, site: str, serial: str, now: float, public_key: str = ""
    ) -> None:
        async with self.db.tx() as db:
            async with db.execute(
                "SELECT site, expires, used FROM enrollments WHERE secret_hash = ?", (secret_hash,)
            ) as c:
                row = await c.fetchone()
            check_enrollment_row(row, site, now)
            await db.execute(
                "UPDATE enrollments SET used = ? WHERE secret_hash = ?", (now, secret_hash)
            )
            await db.execute(
                "UPDATE sites SET cert_serial = ?, enrolled = ?, revoked = 0, "
                "last_seq = 0, public_key = ? WHERE name = ?",
                (serial, now, public_key, site),
            )

    # --- sites ----------------------------------------------------------------------------

    _SITE_COLUMNS = SITE_COLUMNS

    async def load(self) -> list[Site]:
        rows = await self.db.rows(f"SELECT {self._SITE_COLUMNS} FROM sites ORDER BY name")
        return sites_from_rows(rows)

    async def get(self, names: Sequence[str]) -> list[Site]:
        rows: list[Any] = []
        for i in range(0, len(names), 500):
            chunk = list(names[i : i + 500])
            marks = ",".join("?" * len(chunk))
            rows += await self.db.rows(
                f"SELECT {self._SITE_COLUMNS} FROM sites WHERE name IN ({marks})", chunk
            )
        return sites_from_rows(rows)

    async def _write(self, db: aiosqlite.Connection, s: Site) -> None:
        await db.execute(
            f"INSERT OR REPLACE INTO sites ({self._SITE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                s.name,
                dumps(s.labels),
                s.created,
                dumps(s.tenants),
                s.cert_serial,
                s.enrolled,
                int(s.revoked),
                s.revision,
                s.digest,
                s.last_seq,
                s.last_contact,
                dumps(s.status) if s.status is not None else None,
                s.status_time,
                dumps(s.ready),
                dumps(s.failed),
                s.public_key,
            ),
        )

    async def save(self, site: Site) -> None:
        async with self.db.tx() as db:
            await self._write(db, site)

    async def save_revisions(self, changes: Sequence[tuple[str, int, str]]) -> None:
        async with self.db.tx() as db:
            await db.executemany(
                "UPDATE sites SET revision = ?, digest = ?, ready = '{}' WHERE name = ?",
                [(r, d, n) for n, r, d in changes],
            )

    async def save_contacts(self, contacts: Iterable[tuple[str, float]]) -> None:
        async with self.db.tx() as db:
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
        return await self._statuses.submit(site, seq, events, now)

    async def _apply_statuses(self, batch: list[PendingStatus]) -> None:
        names = sorted({item[0].name for item in batch})
        async with self.db.tx() as db:
            last: dict[str, int] = {}
            for i in range(0, len(names), 500):
                chunk = names[i : i + 500]
                marks = ",".join("?" * len(chunk))
                async with db.execute(
                    f"SELECT name, last_seq FROM sites WHERE name IN ({marks})", chunk
                ) as c:
                    last.update({str(r[0]): int(r[1]) for r in await c.fetchall()})
            writes = plan_group(batch, last)
            await db.executemany(
                "UPDATE sites SET last_seq = ?, status = ?, status_time = ?, ready = ?, "
                "failed = ?, last_contact = ? WHERE name = ?",
                list(writes.updates.values()),
            )
            if writes.inserts:
                await db.executemany(
                    f"INSERT INTO site_events ({EVENT_INSERT_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    writes.inserts,
                )
                trimmed = writes.sites_with_events
                await db.executemany(
                    "DELETE FROM site_events WHERE site = ? AND id <= (SELECT id FROM "
                    "site_events WHERE site = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    [(n, n, EVENTS_KEPT_PER_SITE) for n in trimmed],
                )
        writes.settle()

    async def events(self, site: str, limit: int) -> list[dict[str, Any]]:
        rows = await self.db.rows(
            "SELECT seq, received, event FROM site_events WHERE site = ? ORDER BY id DESC LIMIT ?",
            (site, limit),
        )
        return [{"seq": r[0], "received": r[1], "event": json.loads(r[2])} for r in rows[::-1]]
