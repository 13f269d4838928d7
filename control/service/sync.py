"""The sites' side: long-polls for the desired state, status batches, last contact times."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from control.fleet.rollout import observe_status
from control.model import Invalid, Site, StatusResult, copy_site
from control.service.core import Core
from control.service.vaults import Vaults
from control.store.base import StoreUnavailable

log = logging.getLogger(__name__)

CONTACT_FLUSH_SECONDS = 10.0
CONTACT_STALE_SECONDS = 60.0  # older contacts are news to other control processes
CONTACT_NEWS_SECONDS = 0.2
MAX_EVENTS_PER_BATCH = 1000
JOIN_IN_THREAD = 1 << 20  # bytes of desired state assembled off the event loop


class Sync:
    def __init__(self, core: Core, vaults: Vaults) -> None:
        self.core = core
        self.vaults = vaults
        self._contacts: dict[str, float] = {}
        self._contact_news = asyncio.Event()  # a site came online (shared stores only)

    async def desired_body(self, site: Site) -> bytes:
        """The site's desired state, with its vaults sealed to its key and the quotas of the
        tenants whose applications it runs (the enforcer holds the site to them too)."""
        vaults = await self.vaults.sealed(site)
        quotas = json.dumps(self.site_quotas(site), separators=(",", ":")).encode()
        pieces = [self.core.fleet.desired_body(site)[:-1], b',"vaults":[']
        for n, entry in enumerate(vaults):
            pieces += [b",", entry] if n else [entry]
        pieces += [b'],"quotas":', quotas, b"}"]
        if sum(len(p) for p in pieces) < JOIN_IN_THREAD:
            return b"".join(pieces)
        # copying megabytes: bytes.join lets go of the GIL for that, so the loop runs on
        return await asyncio.to_thread(b"".join, pieces)

    def site_quotas(self, site: Site) -> list[dict[str, Any]]:
        """``[{tenant, members, quota}]``: every tenant with a quota above a placed app's tenant."""
        fleet = self.core.fleet
        limiters = sorted(
            {
                t
                for p in fleet.desired.placed(site.digest)
                for t in fleet.ancestors(p.tenant)
                if t in fleet.tenants and fleet.tenants[t].quota
            }
        )
        return [
            {
                "tenant": t,
                "members": sorted(fleet.subtree(t)),
                "quota": dict(fleet.tenants[t].quota),
            }
            for t in limiters
        ]

    async def wait_desired(self, site: Site, revision: int, wait: float) -> bytes | None:
        """The desired state once its revision differs from `revision`; None after `wait`."""
        self.touch(site.name)
        if site.revision != revision:
            return await self.desired_body(site)
        if wait <= 0 or self.core.stopping:
            return None
        try:
            woken = await self.core.fleet.desired.wait(site.name, wait)
        finally:
            self.touch(site.name)
        current = self.core.fleet.sites.get(site.name)
        if not woken or current is None or current.revoked or current.revision == revision:
            return None
        return await self.desired_body(current)

    def touch(self, site: str) -> None:
        now = self.core.clock()
        self._contacts[site] = now
        record = self.core.fleet.sites.get(site)
        if record is not None:
            if self.core.store.feed is not None and (
                record.last_contact is None or now - record.last_contact > CONTACT_STALE_SECONDS
            ):
                self._contact_news.set()  # other control processes learn soon it is online
            record.last_contact = now

    async def flush_contacts(self) -> None:
        if self._contacts:
            contacts, self._contacts = self._contacts, {}
            try:
                await self.core.store.sites.save_contacts(contacts.items())
            except Exception:
                self._contacts = {**contacts, **self._contacts}  # for the next try
                raise

    async def flush_contacts_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._contact_news.wait(), CONTACT_FLUSH_SECONDS)
                await asyncio.sleep(CONTACT_NEWS_SECONDS)  # gather the others arriving now
            self._contact_news.clear()
            try:
                await self.flush_contacts()
            except StoreUnavailable as e:  # kept for the next try
                log.warning("saving last contact times: %s", e)
            except Exception:
                log.exception("saving last contact times failed")

    async def push_status(self, site: Site, seq: Any, status: Any, events: Any) -> StatusResult:
        """Apply a status batch exactly once (see `SiteRecords.apply_status`)."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise Invalid("seq must be a positive integer")
        if status is not None and not isinstance(status, dict):
            raise Invalid("status must be an object or null")
        if not isinstance(events, list) or len(events) > MAX_EVENTS_PER_BATCH:
            raise Invalid(f"events must be a list of at most {MAX_EVENTS_PER_BATCH}")
        core = self.core
        self.touch(site.name)
        now = core.clock()
        updated = copy_site(site)
        if status is not None:
            updated.status = status
            updated.status_time = now
            instances = status.get("instances", [])
            if not isinstance(instances, list) or not all(isinstance(i, dict) for i in instances):
                raise Invalid("status.instances must be a list of objects")
            if updated.in_sync:
                versions = {
                    p.application: p.version for p in core.fleet.desired.placed(site.digest)
                }
                before = (site.status or {}).get("instances", [])
                updated.ready, updated.failed = observe_status(
                    site.ready, instances, versions, now, before if isinstance(before, list) else []
                )
            else:
                updated.ready, updated.failed = {}, {}
        result = await core.store.sites.apply_status(updated, seq, events, now)
        if result.applied:
            current = core.fleet.sites.get(site.name)
            if current is not None:
                current.last_seq = seq
                if status is not None:
                    current.status, current.status_time = updated.status, now
                    if current.revision == updated.revision:
                        current.ready, current.failed = updated.ready, updated.failed
            core.metrics.inc("status_batches_applied_total")
            core.metrics.inc("events_received_total", len(events))
        else:
            core.metrics.inc("status_batches_duplicate_total")
        return result
