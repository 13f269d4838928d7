"""Local image ids and pulls, shared by every worker of the host.

One lookup and one pull per image reference, however many instances ask for it at once; the
references being pulled right now are known (`pulling`), for status.
"""

from __future__ import annotations

import asyncio

from enforcer.reconcile.runtime import Runtime


class Images:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._ids: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._pulls: dict[str, asyncio.Future[str]] = {}

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
