"""The site's event log: events are stored, logged, handed to followers and to control's link."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from enforcer.facade import Event
from enforcer.site.store import Store, StoreError

__all__ = ["EventLog"]

log = logging.getLogger(__name__)


class EventLog:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.forward: Callable[[dict[str, Any]], None] | None = None  # to control, when linked
        self._changed = asyncio.Condition()
        self._last_seq = 0

    async def open(self) -> None:
        events = await self.store.events_since(0, limit=1)
        self._last_seq = events[0].seq if events else 0

    async def emit(
        self,
        kind: str,
        message: str,
        *,
        app: str = "",
        instance: str = "",
        tenant: str = "",
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            ev = await self.store.add_event(
                kind, message, app=app, instance=instance, tenant=tenant, fields=fields
            )
        except StoreError as exc:
            log.error("event not stored (%s): %s", exc, message)
            return
        log.info("%s: %s", kind, message)
        async with self._changed:
            self._last_seq = ev.seq
            self._changed.notify_all()
        if self.forward is not None:
            self.forward(ev.to_json())

    async def since(self, since: int, follow: bool) -> AsyncIterator[Event]:
        """Events with seq > `since`; with `follow`, waits for new ones forever."""
        last = since
        while True:
            batch = await self.store.events_since(last)
            for ev in batch:
                last = ev.seq
                yield ev
            if batch and len(batch) == 1000:
                continue
            if not follow:
                return
            async with self._changed:
                await self._changed.wait_for(functools.partial(self._newer_than, last))

    def _newer_than(self, seq: int) -> bool:
        return self._last_seq > seq
