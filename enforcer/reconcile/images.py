"""Local image ids and pulls, shared by every worker of the host.

One lookup and one pull per image reference, however many instances ask for it at once; the
references being pulled right now are known (`pulling`), for status. `prefetch` pulls images
ahead of time in the background (a host of a multi-host site keeps the images of every
instance it could be given, so a move needs no registry); a reference that failed is tried
again after `PREFETCH_RETRY` seconds, at the next `prefetch`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from enforcer.reconcile.runtime import Runtime

log = logging.getLogger(__name__)

PREFETCH_RETRY = 30.0


class Images:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._ids: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._pulls: dict[str, asyncio.Future[str]] = {}
        self._prefetching: dict[str, asyncio.Task[None]] = {}
        self._prefetch_failed: dict[str, float] = {}  # ref -> when it failed (monotonic)

    @property
    def pulling(self) -> frozenset[str]:
        return frozenset(self._pulls)

    def forget(self) -> None:
        """The engine came back: it may have lost images since."""
        self._ids.clear()

    async def image_id(self, ref: str) -> str | None:
        """The local image id of `ref` (None: not pulled)."""
        if ref in self._ids:
            return self._ids[ref]
        lock = self._locks.setdefault(ref, asyncio.Lock())
        async with lock:
            if ref not in self._ids:
                found = await self.runtime.image_id(ref)
                if found is None:
                    return None
                self._ids[ref] = found
        return self._ids[ref]

    async def pull(self, ref: str) -> str:
        """Pull once however many instances ask for the same image at the same time."""
        fut = self._pulls.get(ref)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._pulls[ref] = fut
            try:
                image = await self.runtime.pull(ref)
                self._ids[ref] = image
                fut.set_result(image)
            except Exception as exc:
                fut.set_exception(exc)
                fut.exception()  # retrieved: the waiters get it too
            finally:
                del self._pulls[ref]
        return await asyncio.shield(fut)

    def prefetch(self, refs: Iterable[str]) -> None:
        """Pull these references in the background where they are not here yet."""
        now = time.monotonic()
        for ref in refs:
            failed = self._prefetch_failed.get(ref)
            if ref in self._ids or ref in self._prefetching:
                continue
            if failed is not None and now - failed < PREFETCH_RETRY:
                continue
            task = asyncio.create_task(self._prefetch(ref), name=f"prefetch {ref}")
            self._prefetching[ref] = task

    async def _prefetch(self, ref: str) -> None:
        try:
            if await self.image_id(ref) is None:
                await self.pull(ref)
                log.info("image %s pulled ahead of time", ref)
            self._prefetch_failed.pop(ref, None)
        except Exception as exc:
            log.warning("cannot pull image %s ahead of time: %s", ref, exc)
            self._prefetch_failed[ref] = time.monotonic()
        finally:
            del self._prefetching[ref]

    async def close(self) -> None:
        """Stop the pulls ahead of time."""
        tasks = list(self._prefetching.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
