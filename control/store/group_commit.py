"""Status batches arriving together, committed together: one transaction for up to
`STATUS_GROUP` of them, so that a fleet answering a change at once costs a few transactions,
not one per site. Both stores put their status writes behind one of these."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from control.model import Site, StatusResult
from control.store.rows import STATUS_GROUP

__all__ = ["GroupCommit", "PendingStatus"]

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
