"""A lease kept alive in the background, that knows when it must have expired.

`KeptLease.start()` grants a lease and renews it every `interval` (a third of the TTL by
default). When the store says the lease is gone, or when no renewal has succeeded for a whole
TTL (the store cannot be reached: the lease must have expired there by now), `lost` is set and
renewing stops: whoever held something under the lease (a registration, a leadership) no longer
does. `must_have_expired_at` is that moment by the local clock — what fencing waits for.
Works on any `SiteKV` engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from enforcer.site.kv.base import KVError, Lease, LeaseNotFound, SiteKV, check_ttl

__all__ = ["KeptLease"]

log = logging.getLogger(__name__)


class KeptLease:
    def __init__(
        self,
        kv: SiteKV,
        ttl: float,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "lease",
    ) -> None:
        self.kv = kv
        self.ttl = check_ttl(ttl)
        self.interval = interval if interval is not None else self.ttl / 3
        self.clock = clock
        self.name = name
        self.lost = asyncio.Event()
        self._lease: Lease | None = None
        self._renewed = 0.0  # local time a successful renewal was sent
        self._task: asyncio.Task[None] | None = None

    @property
    def id(self) -> int:
        if self._lease is None:
            raise RuntimeError(f"{self.name}: the lease has not been granted yet")
        return self._lease.id

    @property
    def must_have_expired_at(self) -> float:
        """The local time by which the store has surely let the lease expire, unless renewed."""
        granted = self._lease.ttl if self._lease is not None else self.ttl
        return self._renewed + granted

    async def start(self) -> Lease:
        """Grant the lease and start renewing it. Raises KVError when the store cannot."""
        sent = self.clock()
        self._lease = await self.kv.grant(self.ttl)
        self._renewed = sent
        self.lost.clear()
        self._task = asyncio.create_task(self._keep(), name=f"{self.name}-keep-alive")
        return self._lease

    async def stop(self, *, revoke: bool = True) -> None:
        """Stop renewing; with `revoke`, end the lease now (its keys go at once)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if revoke and self._lease is not None and not self.lost.is_set():
            with contextlib.suppress(KVError):
                await self.kv.revoke(self._lease.id)
        self.lost.set()

    async def renew(self) -> None:
        """Renew once now; sets `lost` when the lease is gone or must have expired."""
        if self.lost.is_set():
            return
        sent = self.clock()
        left = max(0.001, self.must_have_expired_at - sent)
        try:
            # a renewal that hangs past the expiry cannot save the lease: give up then
            await asyncio.wait_for(self.kv.keep_alive(self.id), timeout=left)
        except TimeoutError:
            log.warning(
                "%s: lease %x must have expired: the store did not answer", self.name, self.id
            )
            self.lost.set()
            return
        except LeaseNotFound:
            log.warning("%s: lease %x expired in the site store", self.name, self.id)
            self.lost.set()
            return
        except KVError as exc:
            log.warning("%s: cannot renew lease %x: %s", self.name, self.id, exc)
            if self.clock() >= self.must_have_expired_at:
                log.warning("%s: lease %x must have expired by now", self.name, self.id)
                self.lost.set()
            return
        self._renewed = sent

    async def _keep(self) -> None:
        while not self.lost.is_set():
            await asyncio.sleep(self.interval)
            await self.renew()
