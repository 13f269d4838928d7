"""Per-site desired-state documents and the long-polls waiting for them to change.

Sites with the same set of (application, version) share one serialised application list (keyed
by its digest); a waiting long-poll is a future per site, resolved when its revision moves or
by a timer, so an idle site costs a parked coroutine and nothing else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from control.fleet.placement import Placed
from control.model import AppVersion


class DesiredStates:
    def __init__(self) -> None:
        self.polling: set[str] = set()  # sites with a long-poll waiting now
        self._waiters: dict[str, list[asyncio.Future[bool]]] = {}
        self._placed: dict[str, list[Placed]] = {}
        self._bodies: dict[str, bytes] = {}

    def remember(self, digest: str, placed: list[Placed]) -> None:
        self._placed.setdefault(digest, placed)

    def placed(self, digest: str) -> list[Placed]:
        return self._placed.get(digest, [])

    def body(self, revision: int, digest: str, apps: Mapping[tuple[str, str], AppVersion]) -> bytes:
        """``{"revision": N, "applications": [{name, version, tenant, deployment, spec}]}``."""
        listing = self._bodies.get(digest)
        if listing is None:
            listing = json.dumps(
                [
                    {
                        "name": p.application,
                        "version": p.version,
                        "tenant": p.tenant,
                        "deployment": p.deployment,
                        "spec": apps[(p.application, p.version)].document,
                    }
                    for p in self.placed(digest)
                    if (p.application, p.version) in apps
                ],
                separators=(",", ":"),
            ).encode()
            self._bodies[digest] = listing
        return b'{"revision":%d,"applications":%s}' % (revision, listing)

    async def wait(self, site: str, timeout: float) -> bool:
        """Wait until `wake(site)` or `timeout`; True when woken.

        A bare future and a timer per waiting site: no task, no event.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiters.setdefault(site, []).append(future)
        timer = loop.call_later(timeout, _resolve, future, False)
        self.polling.add(site)
        try:
            return await future
        finally:
            timer.cancel()
            waiting = self._waiters.get(site)
            if waiting is not None and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._waiters[site]
            if site not in self._waiters:
                self.polling.discard(site)

    def wake(self, site: str) -> None:
        for future in self._waiters.pop(site, ()):
            _resolve(future, True)
        self.polling.discard(site)

    def wake_all(self) -> None:
        for site in list(self._waiters):
            self.wake(site)


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
