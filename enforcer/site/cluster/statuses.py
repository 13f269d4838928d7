"""The instances' status of every host of a multi-host site, for the leader to report.

Every host publishes its instances' status (a JSON list, as `InstanceStatus.to_json`) under
/site/status/<host>, under its registration's lease, so it goes with the host. Every host keeps
the others' lists from its watch of the site; the leader hands the whole site's to control.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from enforcer.site.cluster import records as keys
from enforcer.site.kv.base import Entry, Event, EventKind, KVError, SiteKV
from enforcer.site.kv.registry import Registration

__all__ = ["SiteStatuses"]

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 0.5
# the states in which an instance may have a container running
BUSY = frozenset({"creating", "starting", "running", "stopping", "unknown"})


class SiteStatuses:
    def __init__(self, host: str, own: Callable[[], list[dict[str, Any]]]) -> None:
        self.host = host
        self.own = own  # this host's instances, now
        # the instances this host still stops though they are no longer its own (set by the
        # daemon): shown as stopping, so that a move waits for them (`placement`)
        self.leaving: Callable[[], frozenset[str]] = frozenset
        self.by_host: dict[str, list[dict[str, Any]]] = {}  # the other hosts', as published
        self._published = b""

    def _set(self, key: str, value: bytes) -> None:
        host = key[len(keys.STATUS) :]
        try:
            found = json.loads(value)
            if not isinstance(found, list) or not all(isinstance(i, dict) for i in found):
                raise ValueError("not a list of instances")
        except ValueError as exc:
            log.error("site store: %s: %s", key, exc)
            return
        self.by_host[host] = found

    def load(self, entries: list[Entry]) -> None:
        self.by_host.clear()
        for entry in entries:
            if entry.key.startswith(keys.STATUS):
                self._set(entry.key, entry.value)

    def apply(self, event: Event) -> None:
        if event.kind is EventKind.PUT:
            self._set(event.key, event.value)
        else:
            self.by_host.pop(event.key[len(keys.STATUS) :], None)

    def mine(self) -> list[dict[str, Any]]:
        """This host's instances now, those it is still stopping as such."""
        found = {str(i.get("id")): i for i in self.own()}
        for iid in self.leaving():
            found[iid] = {**found.get(iid, {"id": iid, "host": self.host}), "state": "stopping"}
        return [found[i] for i in sorted(found)]

    def site(self) -> list[dict[str, Any]]:
        """Every host's instances: this one's now, the others' as they last published them."""
        out = self.mine()
        for host, found in sorted(self.by_host.items()):
            if host != self.host:
                out += found
        return out

    def busy(self) -> dict[str, frozenset[str]]:
        """Per other host, the instances it last reported as possibly running."""
        return {
            host: frozenset(str(i.get("id")) for i in found if i.get("state") in BUSY)
            for host, found in self.by_host.items()
        }

    async def publish_forever(self, kv: SiteKV, registration: Registration) -> None:
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL)
            if not registration.registered.is_set():
                self._published = b""
                continue
            body = json.dumps(self.mine(), sort_keys=True).encode()
            if body == self._published:
                continue
            try:
                await kv.put(keys.STATUS + self.host, body, registration.lease.id)
                self._published = body
            except KVError as exc:
                log.debug("host %s cannot publish its status: %s", self.host, exc)
