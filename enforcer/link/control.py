"""The enforcer's link to control: enrollment (at start or while running) and the sync client.

A site-local enforcer (no bundle in the config, no identity in the state directory) loads no
TLS stack at all. `ControlLink.enroll` enrolls a running enforcer and starts syncing at once;
a site that is enrolled already is refused with `AlreadyEnrolled`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enforcer.facade import Conflict

if TYPE_CHECKING:
    from enforcer.link.enrollment import SiteIdentity
    from enforcer.link.leader import SiteLeaderLink
    from enforcer.link.sync import OnDesired, OnRequest, OnVaults, SyncClient
    from enforcer.site.cluster.coordinator import Coordinator
    from enforcer.site.cluster.identity import SiteIdentityKeys

__all__ = ["AlreadyEnrolled", "ControlLink", "enrolled_site"]

log = logging.getLogger(__name__)

STATUS_INTERVAL = 2.0  # seconds between instance snapshots handed to the sync client


class AlreadyEnrolled(Conflict):
    """This site is enrolled with control already."""


def enrolled_site(state_dir: Path) -> str:
    """The site name of an enrolled enforcer, read without loading the TLS stack."""
    try:
        return str(json.loads((state_dir / "site" / "site.json").read_text())["site"])
    except (OSError, ValueError, KeyError):
        return ""


def read_bundle(configured: str) -> str:
    """The bundle of ``[control] enrollment``: the text, or the file ``@PATH`` names (which may
    not be there yet: zero-touch provisioning drops it later)."""
    if not configured.startswith("@"):
        return configured.strip()
    try:
        return Path(configured[1:]).read_text().strip()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        log.error("cannot read the enrollment bundle %s: %s", configured[1:], exc)
        return ""


class ControlLink:
    """Enrollment and sync for one enforcer; the daemon hands in what sync calls back."""

    def __init__(
        self,
        state_dir: Path,
        *,
        on_desired: OnDesired,
        on_vaults: OnVaults,
        on_quotas: OnVaults,
        on_identity: Callable[[str], Awaitable[None]],
        status: Callable[[], dict[str, Any]],
        emit: Callable[[str, str], Awaitable[None]],
        key_fetcher: Callable[[Callable[[], Awaitable[bytes]]], None],
        on_request: OnRequest | None = None,
    ) -> None:
        self.state_dir = state_dir
        self._on_desired = on_desired
        self._on_vaults = on_vaults
        self._on_quotas = on_quotas
        self._on_identity = on_identity  # the site's name as control knows it
        self._status = status
        self._emit = emit
        self._key_fetcher = key_fetcher  # gets how to fetch the vault key from control
        self._on_request = on_request  # control's log requests (in the long-poll)
        self.sync: SyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sync_tasks: list[asyncio.Task[None]] = []
        self._enrolling = asyncio.Lock()
        self._enroll_error = ""  # why the configured enrollment failed
        self.site: SiteLeaderLink | None = None  # a multi-host site: the leader syncs
        self._bundle = ""  # the configured enrollment bundle (read at `start`)

    def follow_site(self, cluster: Coordinator, keys: SiteIdentityKeys) -> None:
        """A multi-host site (before `start`): the site's identity lives in its store and only
        its leader syncs (`enforcer.link.leader`)."""
        from enforcer.link.leader import SiteLeaderLink

        self.site = SiteLeaderLink(self, cluster, keys)

    @property
    def enrolled(self) -> bool:
        return bool(enrolled_site(self.state_dir))

    async def start(self, configured_bundle: str) -> None:
        """Enroll with the configured bundle when not enrolled yet, then sync if enrolled."""
        bundle = read_bundle(configured_bundle) if configured_bundle else ""
        self._bundle = bundle
        if self.site is not None:
            self._start_site_link()
            return
        if not bundle and not self.enrolled:
            return  # a site-local enforcer: no TLS stack loaded (about 8 MB less)
        from enforcer.link import enrollment

        if bundle and enrollment.load_site_identity(self.state_dir) is None:
            await self.enroll_with(bundle)
        identity = enrollment.load_site_identity(self.state_dir)
        if identity is not None:
            await self.start_sync(identity)

    def _start_site_link(self) -> None:
        assert self.site is not None
        task = asyncio.create_task(self.site.run(self._bundle), name="site-control-link")
        task.add_done_callback(_log_if_failed)
        self._tasks.append(task)

    async def join_site(self, cluster: Coordinator, keys: SiteIdentityKeys) -> None:
        """This running enforcer joined a multi-host site (`edge-enforcer site join`): from
        now on the link follows the site's, as after `follow_site` and `start`. A one-host
        site's own sync stops; its identity goes into the site store when the site has none
        (`enforcer.link.leader`), and its leader syncs."""
        if self.site is not None:
            return
        await self.stop_sync()
        self.follow_site(cluster, keys)
        self._start_site_link()

    async def leave_site(self) -> None:
        """This host left its multi-host site: the link stops, and the site's identity goes
        from this host (it syncs for the site no more)."""
        from enforcer.link.leader import forget_site_identity

        tasks, self._tasks = self._tasks, []
        await _cancel(tasks)
        await self.stop_sync()
        self.site = None
        forget_site_identity(self.state_dir)

    async def enroll_with(self, bundle: str) -> None:
        """Enroll with the configured bundle; a failure is logged, kept for `link` and emitted."""
        from enforcer.link import enrollment

        try:
            await enrollment.enroll(bundle, self.state_dir)
        except Exception as exc:
            log.error("enrollment with control failed: %s", exc)
            self._enroll_error = str(exc)
            await self._emit("control.enrollment-failed", str(exc))
        else:
            if self.site is not None:
                self.site.wake.set()

    async def enroll(self, bundle: str) -> SiteIdentity:
        """Enroll this running enforcer with `bundle` and start syncing at once.

        Raises AlreadyEnrolled, or what `enforcer.link.enrollment.enroll` raises."""
        from enforcer.link import enrollment

        async with self._enrolling:
            if self.site is not None:  # the site's, whichever host enrolls it
                await self.site.check_enroll()
                new = await enrollment.enroll(bundle, self.state_dir)
                self._enroll_error = ""
                await self._emit("control.enrolled", f"enrolled as site {new.site} with {new.url}")
                self.site.wake.set()  # into the store; the leader syncs
                return new
            identity = enrollment.load_site_identity(self.state_dir)
            if identity is not None:
                raise AlreadyEnrolled(
                    f"this site is enrolled already, as {identity.site} with control at "
                    f"{identity.url}"
                )
            identity = await enrollment.enroll(bundle, self.state_dir)
            self._enroll_error = ""
            await self._emit(
                "control.enrolled", f"enrolled as site {identity.site} with {identity.url}"
            )
            await self.start_sync(identity)
            return identity

    async def identified(self, identity: SiteIdentity) -> None:
        """A multi-host site's identity arrived: the site's name as control knows it, and
        control's vault key (remote vaults) fetched with it while this host does not sync."""
        from enforcer.link.leader import fetch_vault_key

        if self.sync is None:
            self._key_fetcher(functools.partial(fetch_vault_key, identity))
        await self._on_identity(identity.site)

    async def start_sync(self, identity: SiteIdentity) -> None:
        from enforcer.link.sync import SyncClient

        await self._on_identity(identity.site)
        self.sync = SyncClient(
            identity,
            on_desired=self._on_desired,
            on_vaults=self._on_vaults,
            on_quotas=self._on_quotas,
            state_dir=self.state_dir,
            on_request=self._on_request,
        )
        await self.sync.open()
        self._key_fetcher(self.sync.fetch_vault_key)
        for coro, name in ((self.sync.run(), "control-sync"), (self._status_loop(), "status")):
            task = asyncio.create_task(coro, name=name)
            task.add_done_callback(_log_if_failed)
            self._sync_tasks.append(task)

    async def stop_sync(self) -> None:
        """Stop syncing (this host of a multi-host site no longer leads)."""
        tasks, self._sync_tasks = self._sync_tasks, []
        await _cancel(tasks)
        sync, self.sync = self.sync, None
        if sync is not None:
            await sync.aclose()

    async def _status_loop(self) -> None:
        while True:
            if self.sync is not None:
                self.sync.set_status(self._status())
            await asyncio.sleep(STATUS_INTERVAL)

    def push_event(self, event: dict[str, Any]) -> None:
        if self.sync is not None:
            self.sync.push_event(event)
        elif self.site is not None:  # a host of a multi-host site: the leader forwards it
            self.site.relay(event)

    def link(self) -> dict[str, Any]:
        """The control link for `GET /v1/site` and `edge-enforcer status`."""
        if self.sync is None and self.site is not None and not self._enroll_error:
            return self.site.standby()
        if self.sync is None:
            why = self._enroll_error
            return {
                "enrolled": False,
                "state": "not enrolled",
                "error": why,
                "description": f"not enrolled: {why}" if why else "not enrolled (site-local)",
            }
        return {"enrolled": True, **self.sync.link}

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await _cancel(tasks)
        await self.stop_sync()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait for them; a cancellation of the caller itself goes on (a
    suppressed await would swallow it)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _log_if_failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %s", task.get_name(), task.exception(), exc_info=task.exception())
