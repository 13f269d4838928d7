"""Per-site desired-state documents and the long-polls waiting for them to change.

Sites with the same set of (application, version) share one serialised application list (keyed
by its digest); a waiting long-poll is an `asyncio.Event` per site, set when its revision moves,
so an idle site costs a parked coroutine and nothing else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from control.deployments import Placed
from control.model import AppVersion


class DesiredStates:
    def __init__(self) -> None:
        self.polling: set[str] = set()  # sites with a long-poll waiting now
        self._waiters: dict[str, asyncio.Event] = {}
        self._placed: dict[str, list[Placed]] = {}
        self._bodies: dict[str, bytes] = {}

    def remember(self, digest: str, placed: list[Placed]) -> None:
        self._placed.setdefault(digest, placed)

    def placed(self, digest: str) -> list[Placed]:
        return self._placed.get(digest, [])

    def body(self, revision: int, digest: str,
             apps: Mapping[tuple[str, str], AppVersion]) -> bytes:
        """``{"revision": N, "applications": [{name, version, tenant, deployment, spec}]}``."""
        listing = self._bodies.get(digest)
        if listing is None:
            listing = json.dumps([
                {"name": p.application, "version": p.version, "tenant": p.tenant,
                 "deployment": p.deployment, "spec": apps[(p.application, p.version)].document}
                for p in self.placed(digest) if (p.application, p.version) in apps
            ], separators=(",", ":")).encode()
            self._bodies[digest] = listing
        return b'{"revision":%d,"applications":%s}' % (revision, listing)

    async def wait(self, site: str, timeout: float) -> bool:
        """Wait until `wake(site)` or `timeout`; True when woken."""
        event = self._waiters.get(site)
        if event is None:
            event = self._waiters[site] = asyncio.Event()
        self.polling.add(site)
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self.polling.discard(site)

    def wake(self, site: str) -> None:
        event = self._waiters.pop(site, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        for site in list(self._waiters):
            self.wake(site)
