"""The control link of a multi-host site: it runs on whichever host leads.

Enrollment belongs to the site (`enforcer.site.cluster.identity`: the identity sealed in the
site store for every host). Every host follows it: it writes its own copy to its state
directory (so containers learn the site's name, and a host that comes to lead has it at hand)
and seals it for hosts that lack a copy. Only the elected leader syncs: it starts the sync
client when it comes to lead and stops it when it stops leading; a new leader picks up with
the identity it holds, without enrolling again. A site enrolled before it had several hosts
(an identity in the state directory, none in the store) puts its identity into the store; a
site with neither enrolls with the configured bundle once one of its hosts leads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from enforcer.site.cluster.identity import IdentityError, SiteIdentityKeys
from enforcer.site.kv.base import KVError

if TYPE_CHECKING:
    from enforcer.link.control import ControlLink
    from enforcer.link.enrollment import SiteIdentity
    from enforcer.site.cluster.coordinator import Coordinator

__all__ = ["SiteLeaderLink"]

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0  # seconds between looks at the store's identity


class SiteLeaderLink:
    def __init__(self, link: ControlLink, cluster: Coordinator, keys: SiteIdentityKeys) -> None:
        self.link = link
        self.cluster = cluster
        self.keys = keys
        self.held: dict[str, str] | None = None  # the site identity, once this host has it
        self.wake = asyncio.Event()

    async def run(self, bundle: str) -> None:
        """Follow the site's identity and lead the link while this host leads; until cancelled."""
        from enforcer.link import enrollment

        published = False
        while True:
            try:
                if not published:
                    await self.keys.publish_key()
                    published = True
                await self._follow(enrollment)
                if self.cluster.leading and self.link.sync is None:
                    await self._lead(bundle, enrollment)
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
            await self.link.identified(identity.site)
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
