"""The fleet's events as operators see them: listed with filters, followed as they arrive, and
forgotten after `keep` seconds (by one control process: the leader).

Events arrive in the sites' status batches; control takes from a site's event only what it
says happened, not whose it is: an event belongs to the tenant owning its application here
(`control.fleet.events.attribute`). A tenant's token lists only its subtree's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import Any

from control.fleet.access import Principal
from control.fleet.events import DEFAULT_KEEP_SECONDS, EventPage, EventQuery, attribute
from control.model import NotFound
from control.service.core import Core
from control.service.sites import Sites
from control.store.base import StoreUnavailable

log = logging.getLogger(__name__)

MAX_WAIT = 300  # seconds a follower's call may wait for something new
POLL_SECONDS = 1.0  # how often a waiting follower looks, when other processes add events too
TRIM_SECONDS = 300.0


class Events:
    def __init__(self, core: Core, sites: Sites, keep: float = DEFAULT_KEEP_SECONDS) -> None:
        self.core = core
        self.sites = sites
        self.keep = keep
        self._arrival = asyncio.Event()  # set (and replaced) when events arrive here

    def attribute(self, events: list[Any]) -> list[Any]:
        """The events of a status batch, each owned by its application's tenant here."""
        return attribute(events, self.core.fleet.app_owner)

    def arrived(self) -> None:
        """Events were stored by this process: wake the followers."""
        arrival, self._arrival = self._arrival, asyncio.Event()
        arrival.set()

    def query(
        self, who: Principal, site: str | None, app: str | None, after: int | None, limit: int
    ) -> EventQuery:
        """What `who` may list: 404 for a site or application it cannot see."""
        if site is not None:
            self.sites.get(who, site)
        if (
            app is not None
            and not who.is_admin
            and not self.core.fleet.app_visible(who.visible, app)
        ):
            raise NotFound(f"application {app!r} does not exist")
        tenants = None if who.is_admin else frozenset(who.visible)
        return EventQuery(site=site, app=app, tenants=tenants, after=after, limit=limit)

    async def list(self, query: EventQuery, wait: float = 0.0) -> EventPage:
        """A page of events; with `wait` and ``after``, waits up to `wait` seconds for one."""
        deadline = time.monotonic() + wait
        while True:
            arrival = self._arrival
            page = await self.core.store.events.page(query)
            remaining = deadline - time.monotonic()
            if page.events or query.after is None or remaining <= 0 or self.core.stopping:
                return page
            query = replace(query, after=page.last)  # what the filter left out: not again
            if self.core.store.feed is not None:  # other processes store events too
                remaining = min(remaining, POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrival.wait(), remaining)

    async def trim(self) -> int:
        """Forget events older than `keep`; how many."""
        return await self.core.store.events.trim(self.core.clock() - self.keep)

    async def trim_forever(self) -> None:
        """On the leader: forget old events now and then."""
        while True:
            if self.core.leads():
                try:
                    gone = await self.trim()
                    if gone:
                        log.info("forgot %d events older than %.0f s", gone, self.keep)
                except StoreUnavailable as e:
                    log.warning("forgetting old events: %s", e)
                except Exception:
                    log.exception("forgetting old events failed")
            await asyncio.sleep(TRIM_SECONDS)
