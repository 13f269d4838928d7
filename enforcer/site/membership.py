"""The site's members: each host registers itself in the site store with a lease it renews.

A host whose lease is older than the lease TTL is dead. The leader is the live controller
whose lease was renewed last; on a one-host site on SQLite that is the one host that holds the
store (nothing else can write it), read from the record like any other.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any

from enforcer.site.store import HostRecord, Store, StoreError

__all__ = ["LEASE_TTL", "Membership", "leader_of"]

log = logging.getLogger(__name__)

LEASE_TTL = 15.0  # seconds; renewed every third of it


def leader_of(hosts: Sequence[HostRecord], now: float, ttl: float = LEASE_TTL) -> str | None:
    """The live controller with the freshest lease; None when no controller is alive."""
    alive = [h for h in hosts if h.role == "controller" and now - h.renewed <= ttl]
    if not alive:
        return None
    return max(alive, key=lambda h: (h.renewed, h.id)).id


class Membership:
    """This host's membership of the site (see the module documentation)."""

    def __init__(
        self, store: Store, host_id: str, address: str = "", ttl: float = LEASE_TTL
    ) -> None:
        self.store = store
        self.host_id = host_id
        self.address = address or socket.gethostname()
        self.role = "controller"  # a one-host site: this host holds the site store
        self.ttl = ttl
        self._task: asyncio.Task[None] | None = None

    async def join(self) -> None:
        """Register (or re-register) this host and keep its lease renewed."""
        await self._renew()
        self._task = asyncio.create_task(self._renew_forever(), name="membership-lease")

    async def leave(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _renew(self) -> None:
        await self.store.put_host(HostRecord(self.host_id, self.address, self.role, time.time()))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self._renew()
            except StoreError as exc:
                log.error("cannot renew this host's lease: %s", exc)

    async def view(self) -> tuple[list[dict[str, Any]], str | None]:
        """The hosts as `GET /v1/site` shows them, and the leader's id. Raises StoreError."""
        hosts = await self.store.hosts()
        now = time.time()
        shown = [
            {
                "id": h.id,
                "address": h.address,
                "role": h.role,
                "state": "alive" if now - h.renewed <= self.ttl else "dead",
                "lease-age": round(max(0.0, now - h.renewed), 3),
            }
            for h in hosts
        ]
        return shown, leader_of(hosts, now, self.ttl)
