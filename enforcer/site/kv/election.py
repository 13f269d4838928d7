"""Leader election on the site store, as etcd's own `concurrency.Election` does it.

Each candidate creates a key `<prefix><lease id>` (value: its candidate id) under a lease it
keeps alive; the key with the lowest create_revision leads. The others wait until a key before
theirs goes — deleted on resign, or with its lease when its holder dies — and look again. So a
dead leader is replaced within its lease TTL (plus the store's expiry check), and candidates
lead in the order they arrived. Built only on `SiteKV`: the same on SQLite and etcd.

A leader that loses its lease (the store said so, or could not be reached for a whole TTL)
sets `lost`: it must stop acting as leader at once; it may campaign again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from enforcer.site.kv.base import Compacted, Entry, EventKind, KVError, SiteKV
from enforcer.site.kv.lease import KeptLease

__all__ = ["DEFAULT_PREFIX", "Election", "Leader", "NotCandidate", "current_leader", "observe"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/site/election/leader/"


class NotCandidate(KVError):
    """The candidate's lease (and with it its key) is gone; it neither leads nor waits."""


@dataclass(frozen=True)
class Leader:
    candidate: str  # the leader's candidate id (a host id)
    key: str
    revision: int  # the create_revision of its key: lower leads
    lease: int | None


def _leader(entries: list[Entry]) -> Leader | None:
    if not entries:
        return None
    first = min(entries, key=lambda e: e.create_revision)
    return Leader(first.value.decode(), first.key, first.create_revision, first.lease)


async def current_leader(kv: SiteKV, prefix: str = DEFAULT_PREFIX) -> Leader | None:
    """The leader now, or None when no candidate holds a live key."""
    entries, _ = await kv.range(prefix)
    return _leader(entries)


async def observe(kv: SiteKV, prefix: str = DEFAULT_PREFIX) -> AsyncIterator[Leader | None]:
    """The leader now, then each new one (None while there is none), without end.
    Re-lists when the watch falls behind compaction."""
    last: Leader | bool | None = False  # False: nothing yielded yet
    while True:
        entries, revision = await kv.range(prefix)
        leader = _leader(entries)
        if leader != last:
            last = leader
            yield leader
        try:
            async with contextlib.aclosing(kv.watch(prefix, revision + 1)) as events:
                async for _ in events:
                    entries, _ = await kv.range(prefix)
                    leader = _leader(entries)
                    if leader != last:
                        last = leader
                        yield leader
        except Compacted:
            log.info("leader watch on %s compacted: listing again", prefix)


class Election:
    """One candidate (see the module documentation)."""

    def __init__(
        self,
        kv: SiteKV,
        candidate: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: float = 3.0,
        keep_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not candidate:
            raise ValueError("an election candidate needs a non-empty id")
        self.kv = kv
        self.candidate = candidate
        self.prefix = prefix
        self.lease = KeptLease(
            kv, ttl, interval=keep_interval, clock=clock, name=f"election {candidate}"
        )
        self.key = ""
        self.revision = 0
        self._leading = False

    @property
    def lost(self) -> asyncio.Event:
        """Set once this candidate's lease is gone: it must not act as leader any more."""
        return self.lease.lost

    @property
    def is_leader(self) -> bool:
        return self._leading and not self.lost.is_set()

    async def campaign(self) -> Leader:
        """Stand, and return once this candidate leads. Raises NotCandidate when its lease is
        lost while waiting, KVError when the store fails."""
        if not self.key or self.lost.is_set():
            lease = await self.lease.start()
            self.key = f"{self.prefix}{lease.id:016x}"
            created = await self.kv.create(self.key, self.candidate.encode(), lease.id)
            if created is None:  # a lease id is unique while the lease lives
                raise KVError(f"election key {self.key} exists already")
            self.revision = created
        while True:
            if self.lost.is_set():
                raise NotCandidate(f"candidate {self.candidate}: its lease is lost")
            entries, revision = await self.kv.range(self.prefix)
            if not any(e.key == self.key for e in entries):
                await self.lease.stop(revoke=False)
                raise NotCandidate(f"candidate {self.candidate}: its lease is gone")
            leader = _leader(entries)
            if leader is not None and leader.key == self.key:
                self._leading = True
                log.info("%s leads (%s)", self.candidate, self.key)
                return leader
            ahead = {e.key for e in entries if e.create_revision < self.revision}
            await self._wait_for_a_delete(ahead, revision + 1)

    async def _wait_for_a_delete(self, keys: set[str], from_revision: int) -> None:
        """Until one of `keys` (or this candidate's own key) is deleted, or the lease is lost."""

        async def deleted() -> None:
            with contextlib.suppress(Compacted):  # look again from a fresh list
                async with contextlib.aclosing(self.kv.watch(self.prefix, from_revision)) as w:
                    async for event in w:
                        if event.kind is EventKind.DELETE and (
                            event.key in keys or event.key == self.key
                        ):
                            return

        watching = asyncio.create_task(deleted(), name=f"election {self.candidate} watch")
        lost = asyncio.create_task(self.lost.wait(), name=f"election {self.candidate} lost")
        try:
            await asyncio.wait({watching, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watching, lost):
                task.cancel()
            await asyncio.gather(watching, lost, return_exceptions=True)
        if watching.done() and not watching.cancelled():
            error = watching.exception()
            if error is not None:
                raise error

    async def resign(self) -> None:
        """Step down (or out of the queue): delete the key and end the lease."""
        self._leading = False
        if self.key:
            with contextlib.suppress(KVError):
                await self.kv.delete(self.key)
        await self.lease.stop(revoke=True)
        self.key = ""
