"""A site's logs fetched on demand through the sync channel (control cannot reach a site).

The operator's call keeps a request in the store and waits. The site finds it in the answer to
its desired-state long-poll (``{"requests": [...]}``) and posts its reply; the operator's call
then answers with the lines. On a shared (PostgreSQL) store the operator's call and the site's
long-poll may be held by two control processes: the request is announced on the change feed
(`CHANGE_LOG_REQUEST`), so the process holding the site's poll wakes it (`noticed`), and the
waiting process reads the reply from the store (the site may post it to any process).

A site that holds no long-poll here and has not been seen lately (by any process, on a shared
store) is answered at once with "site S offline since ..."; a request that no process hands out
within `HAND_WAIT` seconds gets that answer too (a site seen a moment ago that did not poll
again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Iterable
from typing import Any

from control.fleet.access import Principal
from control.fleet.state import OFFLINE_AFTER
from control.model import ControlError, Invalid, NotFound, Site
from control.service.core import Core
from control.service.sites import Sites
from control.store.base import StoreUnavailable

log = logging.getLogger(__name__)

REPLY_WAIT = 20.0  # seconds the operator's call waits for the site's reply
REQUEST_TTL = 30.0  # a request not answered by then is dropped
HAND_WAIT = 3.0  # a request no process hands out by then: the site is offline
RECENT_CONTACT = 10.0  # a site seen this recently is between two long-polls, not offline
CHECK_SECONDS = 0.5  # how often a waiting call looks at the store (replies to other processes)
MAX_TAIL = 10000
DEFAULT_TAIL = 100


class SiteOffline(ControlError):
    status = 503
    code = "site-offline"


class SiteTimeout(ControlError):
    status = 504
    code = "site-timeout"


class SiteFailed(ControlError):
    """The site answered, with an error instead of lines."""

    status = 502
    code = "site-error"


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


class Logs:
    def __init__(self, core: Core, sites: Sites) -> None:
        self.core = core
        self.sites = sites
        self._pending: dict[str, float] = {}  # site -> when a request for it was noticed
        self._replies: dict[str, asyncio.Future[str]] = {}  # requests waited for here

    # --- the site's side ----------------------------------------------------------------------

    def noticed(self, sites: Iterable[str]) -> None:
        """Requests for `sites` were made (here or by another process): wake their polls."""
        now = self.core.clock()
        for site, when in list(self._pending.items()):
            if now - when > REQUEST_TTL:
                del self._pending[site]
        for site in sites:
            self._pending[site] = now
            self.core.fleet.desired.wake(site)

    def pending(self, site: str) -> bool:
        """Whether requests may wait for `site` (then `take` them before waiting)."""
        return site in self._pending

    async def take(self, site: str) -> list[dict[str, Any]]:
        """The requests waiting for `site`, handed out now (each once)."""
        noticed = self._pending.pop(site, None)
        if noticed is None:
            return []
        now = self.core.clock()
        try:
            return await self.core.store.log_requests.take(site, now - REQUEST_TTL, now)
        except BaseException:
            self._pending.setdefault(site, noticed)
            raise

    async def reply(self, site: Site, body: dict[str, Any]) -> None:
        """Keep the site's reply to one of its requests; 404 when there is no such request."""
        request_id = body.get("id")
        if not isinstance(request_id, str) or not request_id:
            raise Invalid("id must be the request's id (a string)", [("id", "is required")])
        lines = body.get("lines", [])
        error = body.get("error")
        if not isinstance(lines, list):
            raise Invalid("lines must be a list", [("lines", "is not a list")])
        for n, line in enumerate(lines):
            if not (
                isinstance(line, dict)
                and isinstance(line.get("line"), str)
                and isinstance(line.get("stream", ""), str)
                and isinstance(line.get("time", 0.0), int | float)
            ):
                raise Invalid(
                    f"lines[{n}] must be an object with line (string), stream and time",
                    [(f"lines[{n}]", "is not {time, stream, line}")],
                )
        if error is not None and not isinstance(error, str):
            raise Invalid("error must be a string or null", [("error", "is not a string")])
        text = json.dumps({"lines": lines, "error": error}, separators=(",", ":"))
        now = self.core.clock()
        stored = await self.core.store.log_requests.reply(
            request_id, site.name, text, now - REQUEST_TTL, now
        )
        if not stored:
            raise NotFound(
                f"no log request {request_id[:64]!r} waits for site {site.name!r} "
                "(unknown, answered already, or expired)"
            )
        waiting = self._replies.get(request_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(text)

    # --- the operator's side ------------------------------------------------------------------

    def _check(self, who: Principal, site: Site, instance: str) -> None:
        if not instance or len(instance) > 253:
            raise Invalid("instance must be an instance id such as web.web.0")
        app = instance.split(".", 1)[0]
        if not who.is_admin and not self.core.fleet.app_visible(who.visible, app):
            raise NotFound(f"instance {instance!r} does not exist at site {site.name!r}")
        status = site.status or {}
        instances = status.get("instances")
        if isinstance(instances, list) and site.status_time is not None:
            ids = {i.get("id") for i in instances if isinstance(i, dict)}
            if instance not in ids:
                raise NotFound(
                    f"instance {instance!r} does not exist at site {site.name!r} "
                    f"(its status of {_iso(site.status_time)} lists {len(ids)} instances)"
                )

    async def fetch(
        self, who: Principal, name: str, instance: str, container: str | None, tail: int
    ) -> dict[str, Any]:
        """The last `tail` lines of `instance` at site `name`, asked of the site now."""
        site = self.sites.get(who, name)
        self._check(who, site, instance)
        if not 1 <= tail <= MAX_TAIL:
            raise Invalid(f"tail must be from 1 to {MAX_TAIL}")
        core = self.core
        now = core.clock()
        if site.name not in core.fleet.desired.polling:
            contact = await self._last_contact(site)
            # alone on the database, this process would hold the poll; else another may
            recent = RECENT_CONTACT if core.store.feed is None else OFFLINE_AFTER
            if contact is None or now - contact > recent:
                raise self._offline(site, contact)
        request_id = secrets.token_urlsafe(16)
        request = {"kind": "logs", "instance": instance, "container": container, "tail": tail}
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        try:
            await core.store.log_requests.add(request_id, site.name, request, now)
            self.noticed([site.name])
            reply = await self._wait(site, request_id, future)
        finally:
            del self._replies[request_id]
            with contextlib.suppress(StoreUnavailable):
                await core.store.log_requests.forget(request_id)
        answer = json.loads(reply)
        if answer.get("error") is not None:
            raise SiteFailed(f"site {site.name!r} could not read the logs: {answer['error']}")
        return {
            "site": site.name,
            "instance": instance,
            "container": container,
            "lines": answer.get("lines", []),
        }

    async def _wait(self, site: Site, request_id: str, future: asyncio.Future[str]) -> str:
        start = time.monotonic()
        while True:
            waited = time.monotonic() - start
            if self.core.stopping:
                raise SiteTimeout("control is stopping; ask again (another process, or soon)")
            if waited >= REPLY_WAIT:
                raise SiteTimeout(
                    f"site {site.name!r} did not answer the log request within {REPLY_WAIT:g} s"
                )
            await asyncio.wait([future], timeout=min(CHECK_SECONDS, REPLY_WAIT - waited))
            if future.done():
                return future.result()
            state = await self.core.store.log_requests.state(request_id)
            if state is None:
                raise SiteTimeout(f"the log request to site {site.name!r} expired")
            handed, reply = state
            if reply is not None:
                return reply
            if handed is None and time.monotonic() - start >= HAND_WAIT:
                raise self._offline(site, await self._last_contact(site))

    async def _last_contact(self, site: Site) -> float | None:
        """The site's last contact with any control process (as far as the store knows)."""
        stored = await self.core.store.sites.get([site.name])
        contacts = [s.last_contact for s in [site, *stored] if s.last_contact is not None]
        return max(contacts) if contacts else None

    @staticmethod
    def _offline(site: Site, contact: float | None) -> SiteOffline:
        """The answer for a site that holds no long-poll: since when it has been away."""
        if contact is None:
            return SiteOffline(f"site {site.name!r} is offline: it has never contacted control")
        return SiteOffline(f"site {site.name!r} offline since {_iso(contact)}")
