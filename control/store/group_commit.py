"""Status batches arriving together, committed together: one transaction for up to
`STATUS_GROUP` of them, so that a fleet answering a change at once costs a few transactions,
not one per site. Both stores put their status writes behind one of these."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from control.fleet.events import event_columns
from control.model import NotFound, OutOfOrder, Site, StatusResult
from control.store.rows import STATUS_GROUP, dumps

__all__ = ["EVENT_INSERT_COLUMNS", "GroupCommit", "GroupWrites", "PendingStatus", "plan_group"]

# the columns of a site_events row that a status batch writes, in the order of `inserts`
EVENT_INSERT_COLUMNS = "site, seq, received, event, tenant, app, instance, kind, time"

PendingStatus = tuple[Site, int, Sequence[Any], float, "asyncio.Future[StatusResult]"]


class GroupCommit:
    def __init__(self, apply: Callable[[list[PendingStatus]], Awaitable[None]]) -> None:
        """`apply` commits one group in one transaction and sets each batch's future."""
        self._apply = apply
        self._pending: list[PendingStatus] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, site: Site, seq: int, events: Sequence[Any], now: float) -> StatusResult:
        future: asyncio.Future[StatusResult] = asyncio.get_running_loop().create_future()
        self._pending.append((site, seq, events, now, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="store-status-writer")
        return await future

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:STATUS_GROUP], self._pending[STATUS_GROUP:]
            try:
                await self._apply(batch)
            except Exception as e:  # the whole transaction failed: so does every batch in it
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(e)


@dataclass
class GroupWrites:
    """What one group of status batches writes, and what each batch's caller gets."""

    updates: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """site -> (last_seq, status, status_time, ready, failed, last_contact, name)"""
    inserts: list[tuple[Any, ...]] = field(default_factory=list)
    """(site, seq, received, event, tenant, app, instance, kind, time) of the events the
    applied batches carry (`EVENT_INSERT_COLUMNS`)"""
    outcomes: list[tuple[asyncio.Future[StatusResult], StatusResult | Exception]] = field(
        default_factory=list
    )

    @property
    def sites_with_events(self) -> list[str]:
        return sorted({row[0] for row in self.inserts})

    def settle(self) -> None:
        """After the commit: every batch's caller gets its outcome."""
        for future, outcome in self.outcomes:
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def plan_group(batch: Sequence[PendingStatus], last: dict[str, int]) -> GroupWrites:
    """Each batch applied exactly once, in order: `last` is each site's last applied sequence
    number as the store holds it (locked); a replay is a duplicate, a gap is out of order."""
    writes = GroupWrites()
    for site, seq, events, now, future in batch:
        if site.name not in last:
            writes.outcomes.append((future, NotFound(f"site {site.name!r} does not exist")))
            continue
        previous = last[site.name]
        if seq <= previous:
            writes.outcomes.append((future, StatusResult(applied=False, last_seq=previous)))
            continue
        if seq != previous + 1:
            message = f"status batch {seq} is out of order: expected seq {previous + 1}"
            writes.outcomes.append((future, OutOfOrder(message, expected=previous + 1)))
            continue
        last[site.name] = seq
        status = dumps(site.status) if site.status is not None else None
        writes.updates[site.name] = (
            seq, status, now, dumps(site.ready), dumps(site.failed), now, site.name,
        )  # fmt: skip
        for e in events:
            c = event_columns(e, now)
            writes.inserts.append(
                (site.name, seq, now, dumps(e), c.tenant, c.app, c.instance, c.kind, c.time)
            )
        writes.outcomes.append((future, StatusResult(applied=True, last_seq=seq)))
    return writes
