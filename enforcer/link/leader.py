"""The control link of a multi-host site: it runs on whichever host leads.

Enrollment belongs to the site (`enforcer.site.cluster.identity`: the identity sealed in the
site store for every host). Every host follows it: it writes its own copy to its state
directory (so containers learn the site's name, and a host that comes to lead has it at hand)
and seals it for hosts that lack a copy. Only the elected leader syncs: it starts the sync
client when it comes to lead and stops it when it stops leading; a new leader picks up with
the identity it holds, without enrolling again. A site enrolled before it had several hosts
(an identity in the state directory, none in the store) puts its identity into the store; a
site with neither enrolls with the configured bundle once one of its hosts leads.

Events: a host that does not lead writes each of its events for control into the store
(/site/events/<host>/<seq>, once the site is enrolled); the leader queues them in its outbox,
waits until the outbox holds them, then deletes them from the store, so each reaches control
once (only a leader that dies in the moment between the two would leave one to go twice).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from enforcer.site.cluster.identity import IdentityError, SiteIdentityKeys
from enforcer.site.cluster.records import EVENTS
from enforcer.site.kv.base import KVError

if TYPE_CHECKING:
    from enforcer.link.control import ControlLink
    from enforcer.link.enrollment import SiteIdentity
    from enforcer.site.cluster.coordinator import Coordinator

__all__ = ["SiteLeaderLink", "fetch_vault_key", "forget_site_identity"]

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0  # seconds between looks at the store's identity


def forget_site_identity(state_dir: Path) -> None:
    """The site's identity (and its sync state) off this host, which left the site."""
    from enforcer.link.enrollment import site_dir

    directory = site_dir(state_dir)
    for name in ("site.json", "key.pem", "cert.pem", "ca.pem", "sync.db", "sync.db-wal",
                 "sync.db-shm"):  # fmt: skip
        (directory / name).unlink(missing_ok=True)


async def fetch_vault_key(identity: SiteIdentity) -> bytes:
    """Control's vault key for a host that holds the site's identity but does not sync (the
    leader's sync client fetches it the same way, `SyncClient.fetch_vault_key`)."""
    from enforcer.link.sync import SyncClient

    class _Holder:  # what the sync client's fetch uses: the identity alone
        def __init__(self, identity: SiteIdentity) -> None:
            self.identity = identity

    return await SyncClient.fetch_vault_key(cast("SyncClient", _Holder(identity)))


class SiteLeaderLink:
    def __init__(self, link: ControlLink, cluster: Coordinator, keys: SiteIdentityKeys) -> None:
        self.link = link
        self.cluster = cluster
        self.keys = keys
        self.held: dict[str, str] | None = None  # the site identity, once this host has it
        self.wake = asyncio.Event()
        self._relaying: set[asyncio.Task[None]] = set()

    async def run(self, bundle: str) -> None:
        """Follow the site's identity and lead the link while this host leads; until cancelled."""
        from enforcer.link import enrollment

        published = False
        while True:
            try:
                # once the site holds an identity (no cryptography loaded before: ~8 MB)
                if not published and (self.held is not None or await self.keys.enrolled()):
                    await self.keys.publish_key()
                    published = True
                await self._follow(enrollment)
                if self.cluster.leading and self.link.sync is None:
                    await self._lead(bundle, enrollment)
                if self.cluster.leading and self.link.sync is not None:
                    await self._forward_events()
            except (KVError, IdentityError, enrollment.EnrollmentError) as exc:
                log.warning("site identity: %s", exc)
            if not self.cluster.leading and self.link.sync is not None:
                log.info("host %s no longer leads: control sync stops", self.cluster.host)
                await self.link.stop_sync()
            self.wake.clear()
            self.cluster.leading_changed.clear()
            waits = [
                asyncio.create_task(e.wait()) for e in (self.wake, self.cluster.leading_changed)
            ]
            try:
                await asyncio.wait(
                    waits, timeout=CHECK_INTERVAL, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in waits:
                    task.cancel()

    async def _follow(self, enrollment: Any) -> None:
        """Take this host's copy from the store; share it with hosts that lack one."""
        found = await self.keys.mine()
        if found is None and self.held is None:
            local = enrollment.load_site_identity(self.link.state_dir)
            if local is not None and not await self.keys.enrolled():
                log.info("site %s: its identity goes into the site store", local.site)
                found = enrollment.identity_fields(local)
        if found is not None and found != self.held:
            identity: SiteIdentity = enrollment.write_site_identity(self.link.state_dir, found)
            self.held = found
            await self.link.identified(identity)
        if self.held is not None:
            shared = await self.keys.share(self.held)
            if shared:
                log.info("site identity sealed for %s", ", ".join(shared))

    async def _lead(self, bundle: str, enrollment: Any) -> None:
        if self.held is None and bundle and not await self.keys.enrolled():
            await self.link.enroll_with(bundle)
            return  # shared on the next look, then synced
        identity = enrollment.load_site_identity(self.link.state_dir)
        if self.held is not None and identity is not None:
            log.info(
                "host %s leads: control sync starts as site %s", self.cluster.host, identity.site
            )
            await self.link.start_sync(identity)

    def relay(self, event: dict[str, Any]) -> None:
        """An event of this host while it does not lead: into the store, for the leader."""
        if self.held is None:
            return  # not enrolled: it stays in the host's own event log
        body = json.dumps(
            {**event, "fields": {**event.get("fields", {}), "host": self.cluster.host}}
        )
        key = f"{EVENTS}{self.cluster.host}/{int(event.get('seq', 0)):012d}"
        task = asyncio.create_task(self._put_event(key, body.encode()), name="event-relay")
        self._relaying.add(task)
        task.add_done_callback(self._relaying.discard)

    async def _put_event(self, key: str, body: bytes) -> None:
        try:
            await self.keys.kv.put(key, body)
        except KVError as exc:
            log.warning("event %s not handed to the site leader: %s", key, exc)

    async def _forward_events(self) -> None:
        """The other hosts' events from the store into this leader's outbox, then out of the
        store."""
        sync = self.link.sync
        entries, _ = await self.keys.kv.range(EVENTS)
        if sync is None or not entries:
            return
        for entry in entries:
            try:
                sync.push_event(json.loads(entry.value))
            except ValueError:
                log.error("site store: %s is not an event; dropped", entry.key)
        await sync.queue.pending()  # after the pushes, on the outbox's one thread: written
        for entry in entries:
            await self.keys.kv.delete(entry.key)
        log.debug("%d events of other hosts forwarded to control", len(entries))

    async def check_enroll(self) -> None:
        """Raise AlreadyEnrolled when the site holds an identity already (KVError: no store)."""
        from enforcer.link.control import AlreadyEnrolled

        if self.held is not None:
            raise AlreadyEnrolled(
                f"this site is enrolled already, as {self.held['site']} with control at "
                f"{self.held['url']}"
            )
        if await self.keys.enrolled():
            raise AlreadyEnrolled("this site is enrolled already (by another of its hosts)")

    def standby(self) -> dict[str, Any]:
        """The control link as a host that does not lead shows it."""
        leader = self.cluster.leader or "not elected yet"
        if self.held is None:
            return {
                "enrolled": False,
                "state": "not enrolled",
                "error": "",
                "description": "not enrolled (site-local)",
            }
        return {
            "enrolled": True,
            "control": self.held["url"],
            "site": self.held["site"],
            "state": "standby",
            "leader": self.cluster.leader,
            "description": f"the site leader ({leader}) syncs with {self.held['url']}",
        }
