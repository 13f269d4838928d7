"""Sites' events across the fleet, and log requests, in control's SQLite store."""

from __future__ import annotations

import json
from typing import Any

from control.fleet.events import EventPage, EventQuery, event_view, page_last
from control.store.base import REQUESTS_KEPT_SECONDS, EventRecords, LogRequests
from control.store.rows import dumps
from control.store.sqlite_db import Database


class SQLiteEvents(EventRecords):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def page(self, query: EventQuery) -> EventPage:
        newest = int((await self.db.rows("SELECT COALESCE(MAX(id), 0) FROM site_events"))[0][0])
        where: list[str] = ["id <= ?"]
        params: list[Any] = [newest]
        if query.site is not None:
            where.append("site = ?")
            params.append(query.site)
        if query.app is not None:
            where.append("app = ?")
            params.append(query.app)
        if query.tenants is not None:
            tenants = sorted(query.tenants)
            where.append(f"tenant IN ({','.join('?' * len(tenants))})" if tenants else "0")
            params += tenants
        if query.after is not None:
            where.append("id > ?")
            params.append(query.after)
        order = "ASC" if query.after is not None else "DESC"
        rows = await self.db.rows(
            "SELECT id, site, received, tenant, event FROM site_events "
            f"WHERE {' AND '.join(where)} "
            f"ORDER BY id {order} LIMIT ?",
            [*params, query.limit],
        )
        if query.after is None:
            rows.reverse()
        events = [event_view(r[0], r[1], r[2], r[3], _loads(r[4])) for r in rows]
        last = page_last([e["id"] for e in events], query.limit, newest, query.after)
        return EventPage(events, last)

    async def trim(self, before: float) -> int:
        async with self.db.tx() as db:
            cursor = await db.execute("DELETE FROM site_events WHERE received < ?", (before,))
            return cursor.rowcount


class SQLiteLogRequests(LogRequests):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, request_id: str, site: str, request: dict[str, Any], now: float) -> None:
        async with self.db.tx() as db:
            await db.execute(
                "DELETE FROM log_requests WHERE created < ?", (now - REQUESTS_KEPT_SECONDS,)
            )
            await db.execute(
                "INSERT INTO log_requests (id, site, request, created) VALUES (?, ?, ?, ?)",
                (request_id, site, dumps(request), now),
            )

    async def take(self, site: str, since: float, now: float) -> list[dict[str, Any]]:
        async with self.db.tx() as db:
            async with db.execute(
                "SELECT id, request FROM log_requests WHERE site = ? AND handed IS NULL "
                "AND created >= ? ORDER BY created",
                (site, since),
            ) as c:
                rows = list(await c.fetchall())
            await db.executemany(
                "UPDATE log_requests SET handed = ? WHERE id = ?", [(now, r[0]) for r in rows]
            )
        return [{"id": r[0], **json.loads(r[1])} for r in rows]

    async def reply(self, request_id: str, site: str, reply: str, since: float, now: float) -> bool:
        async with self.db.tx() as db:
            cursor = await db.execute(
                "UPDATE log_requests SET reply = ?, replied = ? WHERE id = ? AND site = ? "
                "AND reply IS NULL AND created >= ?",
                (reply, now, request_id, site, since),
            )
            return cursor.rowcount == 1

    async def state(self, request_id: str) -> tuple[float | None, str | None] | None:
        rows = await self.db.rows(
            "SELECT handed, reply FROM log_requests WHERE id = ?", (request_id,)
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def forget(self, request_id: str) -> None:
        async with self.db.tx() as db:
            await db.execute("DELETE FROM log_requests WHERE id = ?", (request_id,))


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
