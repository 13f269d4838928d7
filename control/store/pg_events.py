"""Sites' events across the fleet, and log requests, in control's PostgreSQL store.

A new log request is announced on the change feed (`CHANGE_LOG_REQUEST`, named by its site),
so that the control process holding the site's long-poll hands it out at once.
"""

from __future__ import annotations

import json
from typing import Any

from control.fleet.events import EventPage, EventQuery, event_view, page_last
from control.store.base import (
    CHANGE_LOG_REQUEST,
    REQUESTS_KEPT_SECONDS,
    EventRecords,
    LogRequests,
)
from control.store.pg_db import PgDatabase, changed
from control.store.rows import dumps

UNION_TENANTS = 32  # a subtree this small is read tenant by tenant (see `PgEvents.page`)


class PgEvents(EventRecords):
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def page(self, query: EventQuery) -> EventPage:
        newest = int((await self.db.rows("SELECT COALESCE(MAX(id), 0) FROM site_events"))[0][0])
        params: list[Any] = [newest]
        where = ["id <= $1"]

        def add(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if query.site is not None:
            where.append(f"site = {add(query.site)}")
        if query.app is not None:
            where.append(f"app = {add(query.app)}")
        if query.after is not None:
            where.append(f"id > {add(query.after)}")
        order = "ASC" if query.after is not None else "DESC"
        limit = add(query.limit)
        columns = "SELECT id, site, received, tenant, event FROM site_events"
        tenants = sorted(query.tenants) if query.tenants is not None else None
        if tenants is None or len(tenants) > UNION_TENANTS:
            if tenants is not None:
                where.append(f"tenant = ANY({add(tenants)}::text[])")
            sql = f"{columns} WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT {limit}"
        else:
            # one index scan per tenant of the subtree (tenant, id), merged: a tenant's newest
            # events without sorting all of them
            if not tenants:  # a token that sees no tenant sees no event
                return EventPage([], page_last([], query.limit, newest, query.after))
            parts = [
                f"({columns} WHERE {' AND '.join([*where, f'tenant = {add(t)}'])} "
                f"ORDER BY id {order} LIMIT {limit})"
                for t in tenants
            ]
            sql = (
                f"SELECT * FROM ({' UNION ALL '.join(parts)}) AS merged "
                f"ORDER BY id {order} LIMIT {limit}"
            )
        rows = await self.db.rows(sql, *params)
        if query.after is None:
            rows.reverse()
        events = [event_view(r[0], r[1], r[2], r[3], _loads(r[4])) for r in rows]
        last = page_last([e["id"] for e in events], query.limit, newest, query.after)
        return EventPage(events, last)

    async def trim(self, before: float) -> int:
        rows = await self.db.rows(
            "WITH gone AS (DELETE FROM site_events WHERE received < $1 RETURNING 1) "
            "SELECT count(*) FROM gone",
            before,
        )
        return int(rows[0][0])


class PgLogRequests(LogRequests):
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def add(self, request_id: str, site: str, request: dict[str, Any], now: float) -> None:
        async with self.db.tx() as conn:
            await conn.execute(
                "DELETE FROM log_requests WHERE created < $1", now - REQUESTS_KEPT_SECONDS
            )
            await conn.execute(
                "INSERT INTO log_requests (id, site, request, created) VALUES ($1, $2, $3, $4)",
                request_id,
                site,
                dumps(request),
                now,
            )
            await changed(conn, CHANGE_LOG_REQUEST, [site])

    async def take(self, site: str, since: float, now: float) -> list[dict[str, Any]]:
        rows = await self.db.rows(
            "UPDATE log_requests SET handed = $1 WHERE site = $2 AND handed IS NULL "
            "AND created >= $3 RETURNING id, request, created",
            now,
            site,
            since,
        )
        rows.sort(key=lambda r: r[2])
        return [{"id": r[0], **json.loads(r[1])} for r in rows]

    async def reply(self, request_id: str, site: str, reply: str, since: float, now: float) -> bool:
        rows = await self.db.rows(
            "UPDATE log_requests SET reply = $1, replied = $2 WHERE id = $3 AND site = $4 "
            "AND reply IS NULL AND created >= $5 RETURNING 1",
            reply,
            now,
            request_id,
            site,
            since,
        )
        return len(rows) == 1

    async def state(self, request_id: str) -> tuple[float | None, str | None] | None:
        rows = await self.db.rows(
            "SELECT handed, reply FROM log_requests WHERE id = $1", request_id
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def forget(self, request_id: str) -> None:
        await self.db.rows("DELETE FROM log_requests WHERE id = $1", request_id)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
