"""Sites in control's PostgreSQL store: enrollment secrets, site records, status batches, events.

Several control processes share these rows: a secret is used up under a row lock (a bundle works
once across all of them), status batches are checked against ``last_seq`` under a row lock
(exactly once across all of them), and writing a site never overwrites what the sites' own
requests keep (sequence numbers, status, contact times) with an older copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from control.model import Site, StatusResult
from control.store.base import CHANGE_SITE, CHANGE_STATUS, SiteRecords
from control.store.group_commit import EVENT_INSERT_COLUMNS, GroupCommit, PendingStatus, plan_group
from control.store.pg_db import PgDatabase, changed
from control.store.rows import (
    EVENTS_KEPT_PER_SITE,
    SITE_COLUMNS,
    check_enrollment_row,
    dumps,
    sites_from_rows,
)

CONTACT_NEWS_AFTER = 60.0  # a contact this much newer than the stored one is news
_MARKS = ", ".join(f"${n}" for n in range(1, 17))
# what an operator's change writes; the rest belongs to the sites' requests and to revisions
_OPERATOR_COLUMNS = ("labels", "tenants", "cert_serial", "enrolled", "revoked", "public_key")


def _values(s: Site) -> tuple[Any, ...]:
    return (
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
    )


class PgSites(SiteRecords):
    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        self._statuses = GroupCommit(self._apply_statuses)

    # --- enrollment -----------------------------------------------------------------------

    async def create_enrollment(
        self, secret_hash: str, site: Site, expires: float, now: float
    ) -> None:
        async with self.db.tx() as conn:
            await self._write(conn, site)
            await conn.execute(
                "INSERT INTO enrollments VALUES ($1, $2, $3, $4, NULL)",
                secret_hash,
                site.name,
                now,
                expires,
            )
            await changed(conn, CHANGE_SITE, [site.name])

    async def check_enrollment(self, secret_hash: str, site: str, now: float) -> None:
        rows = await self.db.rows(
            "SELECT site, expires, used FROM enrollments WHERE secret_hash = $1", secret_hash
        )
        check_enrollment_row(rows[0] if rows else None, site, now)

    async def consume_enrollment(
        self, secret_hash: str, site: str, serial: str, now: float, public_key: str = ""
    ) -> None:
        async with self.db.tx() as conn:
            row = await conn.fetchrow(
                "SELECT site, expires, used FROM enrollments WHERE secret_hash = $1 FOR UPDATE",
                secret_hash,
            )
            check_enrollment_row(row, site, now)
            await conn.execute(
                "UPDATE enrollments SET used = $1 WHERE secret_hash = $2", now, secret_hash
            )
            await conn.execute(
                "UPDATE sites SET cert_serial = $1, enrolled = $2, revoked = 0, "
                "last_seq = 0, public_key = $3 WHERE name = $4",
                serial,
                now,
                public_key,
                site,
            )
            await changed(conn, CHANGE_SITE, [site])

    # --- sites ----------------------------------------------------------------------------

    async def load(self) -> list[Site]:
        return sites_from_rows(
            await self.db.rows(f"SELECT {SITE_COLUMNS} FROM sites ORDER BY name")
        )

    async def get(self, names: Sequence[str]) -> list[Site]:
        return sites_from_rows(
            await self.db.rows(
                f"SELECT {SITE_COLUMNS} FROM sites WHERE name = ANY($1::text[]) ORDER BY name",
                list(names),
            )
        )

    async def _write(self, conn: asyncpg.Connection, s: Site) -> None:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _OPERATOR_COLUMNS)
        await conn.execute(
            f"INSERT INTO sites ({SITE_COLUMNS}) VALUES ({_MARKS}) "
            f"ON CONFLICT (name) DO UPDATE SET {updates}",
            *_values(s),
        )

    async def save(self, site: Site) -> None:
        async with self.db.tx() as conn:
            await self._write(conn, site)
            await changed(conn, CHANGE_SITE, [site.name])

    async def save_revisions(self, changes: Sequence[tuple[str, int, str]]) -> None:
        """A site's stored revision only moves on, and only when its digest changes: two
        processes that computed the same change store it once."""
        async with self.db.tx() as conn:
            await conn.executemany(
                "UPDATE sites SET "
                "revision = CASE WHEN digest = $3 THEN revision "
                "ELSE GREATEST(revision + 1, $2) END, "
                "ready = CASE WHEN digest = $3 THEN ready ELSE '{}' END, "
                "failed = CASE WHEN digest = $3 THEN failed ELSE '{}' END, "
                "digest = $3 WHERE name = $1",
                list(changes),
            )
            await changed(conn, CHANGE_SITE, [n for n, _, _ in changes])

    async def save_contacts(self, contacts: Iterable[tuple[str, float]]) -> None:
        """Contact times; the sites whose stored one was old are changes for the other
        processes (a site that came online), the rest is not worth waking them for."""
        contacts = list(contacts)
        if not contacts:
            return
        oldest = min(t for _, t in contacts) - CONTACT_NEWS_AFTER
        async with self.db.tx() as conn:
            news = await conn.fetch(
                "SELECT name FROM sites WHERE name = ANY($1::text[]) "
                "AND (last_contact IS NULL OR last_contact < $2)",
                [n for n, _ in contacts],
                oldest,
            )
            await conn.executemany(
                "UPDATE sites SET last_contact = GREATEST(last_contact, $1) WHERE name = $2",
                [(t, n) for n, t in contacts],
            )
            await changed(conn, CHANGE_STATUS, [r[0] for r in news])

    async def apply_status(
        self, site: Site, seq: int, events: Sequence[Any], now: float
    ) -> StatusResult:
        """Apply batch `seq` exactly once across all processes; batches arriving together are
        committed together (group commit)."""
        return await self._statuses.submit(site, seq, events, now)

    async def _apply_statuses(self, batch: list[PendingStatus]) -> None:
        names = sorted({item[0].name for item in batch})
        async with self.db.tx() as conn:
            rows = await conn.fetch(
                "SELECT name, last_seq FROM sites WHERE name = ANY($1::text[]) "
                "ORDER BY name FOR UPDATE",
                names,
            )
            last = {str(r[0]): int(r[1]) for r in rows}
            writes = plan_group(batch, last)
            await conn.executemany(
                "UPDATE sites SET last_seq = $1, status = $2, status_time = $3, ready = $4, "
                "failed = $5, last_contact = $6 WHERE name = $7",
                list(writes.updates.values()),
            )
            if writes.inserts:
                await conn.executemany(
                    f"INSERT INTO site_events ({EVENT_INSERT_COLUMNS}) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    writes.inserts,
                )
                await conn.executemany(
                    "DELETE FROM site_events WHERE site = $1 AND id <= (SELECT id FROM "
                    "site_events WHERE site = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
                    [(n, EVENTS_KEPT_PER_SITE) for n in writes.sites_with_events],
                )
            await changed(conn, CHANGE_STATUS, writes.updates)
        writes.settle()

    async def events(self, site: str, limit: int) -> list[dict[str, Any]]:
        rows = await self.db.rows(
            "SELECT seq, received, event FROM site_events WHERE site = $1 "
            "ORDER BY id DESC LIMIT $2",
            site,
            limit,
        )
        return [{"seq": r[0], "received": r[1], "event": json.loads(r[2])} for r in rows[::-1]]
