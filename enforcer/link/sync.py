"""The site side of sync with control: long-poll the desired state, push status and events.

`SyncClient.run` keeps two loops over one mutual-TLS session: the poller asks for the desired
state by revision (answered at once on change, else "not modified" after the wait) and hands
new states to `on_desired`; the pusher sends sequence-numbered batches of the latest status and
queued events from the outbox (`enforcer.link.outbox`). Failures back off exponentially with
full jitter up to a short cap; a ``Retry-After`` is honoured (`enforcer.link.backoff`).

Control may answer the long-poll early with ``{"requests": [...]}`` (log requests; without a
"revision" when the desired state did not change): each is answered by `on_request` in a task
of its own, beside the poll, and its reply goes to ``POST /v1/sync/replies``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from enforcer.link.backoff import BACKOFF_BASE, BACKOFF_CAP, Backoff, parse_retry_after
from enforcer.link.enrollment import SiteIdentity, site_dir
from enforcer.link.outbox import Batch, EventQueue
from enforcer.link.requests import OnRequest, Requests

__all__ = [
    "Backoff",
    "EventQueue",
    "OnRequest",
    "SyncClient",
    "VaultKeyError",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

POLL_WAIT = 300.0  # seconds a long-poll may wait at control
GZIP_ABOVE = 1024  # a status batch larger than this goes gzip-compressed (control inflates it)

OnDesired = Callable[[int, list[dict[str, Any]]], Awaitable[None]]
# the site's vaults: [{"name", "tenant", "version", "unseal": "local"|"remote", "sealed": {...}}]
OnVaults = Callable[[list[dict[str, Any]]], Awaitable[None]]


class VaultKeyError(Exception):
    """Control did not hand out the site's vault key; the message says why."""


class SyncClient:
    """One site's link to control (see the module documentation)."""

    def __init__(
        self,
        identity: SiteIdentity,
        *,
        on_desired: OnDesired,
        state_dir: Path,
        poll_wait: float = POLL_WAIT,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        on_vaults: OnVaults | None = None,
        on_quotas: OnVaults | None = None,
        on_request: OnRequest | None = None,
    ) -> None:
        self.identity = identity
        self.on_desired = on_desired
        self.on_vaults = on_vaults
        self.on_quotas = on_quotas  # [{tenant, members, quota}] the site is held to
        self.requests = Requests(identity.url, on_request)  # control's log requests
        self.poll_wait = poll_wait
        self.queue = EventQueue(site_dir(state_dir) / "sync.db")
        self._poll_backoff = Backoff(backoff_base, backoff_cap)
        self._push_backoff = Backoff(backoff_base, backoff_cap)
        self._status: dict[str, Any] | None = None
        self._status_version = 0  # bumped by set_status and by applying a revision
        self._status_sent = 0
        self._wakeup = asyncio.Event()
        self._state = "connecting"
        self._since = time.time()
        self._last_contact: float | None = None
        self._error = ""
        self._opened = False

    # --- what the daemon calls ------------------------------------------------------------

    def push_event(self, event: dict[str, Any]) -> None:
        """Queue an event for control (persisted on the outbox's thread)."""
        self.queue.push(event)
        self._wakeup.set()

    def set_status(self, status: dict[str, Any] | list[dict[str, Any]]) -> None:
        """The site's latest instance snapshot: ``{"instances": [...]}`` or the list itself."""
        doc = {"instances": status} if isinstance(status, list) else dict(status)
        if doc != self._status:
            self._status = doc
            self._status_version += 1
            self._wakeup.set()

    @property
    def revision(self) -> int:
        """The last desired-state revision applied."""
        return self.queue.revision

    @property
    def link(self) -> dict[str, Any]:
        """The control link for `edge-enforcer status`."""
        return {
            "control": self.identity.url,
            "site": self.identity.site,
            "state": self._state,
            "since": self._since,
            "last_contact": self._last_contact,
            "error": self._error,
            "revision": self.revision,
            "queued_events": self.queue.queued,
            "description": self.describe(),
        }

    def describe(self) -> str:
        contact = (
            "never"
            if self._last_contact is None
            else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._last_contact))
        )
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._since))
        if self._state == "connected":
            return f"connected to {self.identity.url} (last contact {contact})"
        if self._state == "connecting":
            return f"connecting to {self.identity.url}"
        return f"{self._state} since {since}: {self._error} (last contact {contact})"

    # --- loops ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Read the outbox's state (`run` does it too)."""
        await self.queue.open()
        self._opened = True

    async def run(self) -> None:
        """Sync until cancelled."""
        if not self._opened:
            await self.open()
        connector = aiohttp.TCPConnector(
            ssl=self.identity.ssl_context(), limit=4, keepalive_timeout=60.0
        )
        session = aiohttp.ClientSession(
            connector=connector, skip_auto_headers=("User-Agent", "Accept-Encoding")
        )
        tasks = [
            asyncio.create_task(self._poll_forever(session), name="sync-poll"),
            asyncio.create_task(self._push_forever(session), name="sync-push"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            tasks.extend(self.requests.answering)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await session.close()
            # aiohttp before 3.9 finishes closing TLS connections in the background
            await asyncio.sleep(0.25)

    def close(self) -> None:
        """Close the outbox from outside the event loop (`aclose` on it)."""
        self.queue.close()

    async def aclose(self) -> None:
        await self.queue.aclose()

    async def fetch_vault_key(self, timeout: float = 30.0) -> bytes:
        """The site's 32-byte vault key from control (``unseal = "remote"``): keep it in memory.

        Raises VaultKeyError when control cannot be reached or refuses.
        """
        url = f"{self.identity.url}/v1/sync/vault-key"
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    url,
                    ssl=self.identity.ssl_context(),
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as response,
            ):
                body = await response.json(content_type=None)
                if response.status != 200:
                    message = (
                        body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
                    )
                    raise VaultKeyError(
                        f"control refused the vault key: HTTP {response.status} {message}".rstrip()
                    )
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            raise VaultKeyError(f"cannot fetch the vault key from control: {_describe(e)}") from e
        try:
            key = base64.b64decode(str(body["key"]), validate=True)
        except (KeyError, TypeError, ValueError) as e:
            raise VaultKeyError("control's answer holds no valid vault key") from e
        if len(key) != 32:
            raise VaultKeyError(f"control's vault key is {len(key)} bytes, not 32")
        return key

    def _connected(self) -> None:
        if self._state != "connected":
            if self._state != "connecting":
                log.info("control link to %s is back", self.identity.url)
            self._state, self._since, self._error = "connected", time.time(), ""
        self._last_contact = time.time()

    def _failed(self, state: str, error: str) -> None:
        if self._state != state or self._error != error:
            log.warning("control link to %s: %s", self.identity.url, error)
        if self._state != state:
            self._since = time.time()
        self._state, self._error = state, error

    async def _delay(self, backoff: Backoff, response: aiohttp.ClientResponse | None) -> None:
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        )
        delay = (
            backoff.after_retry_after(retry_after) if retry_after is not None else backoff.next()
        )
        await asyncio.sleep(delay)

    async def _poll_forever(self, session: aiohttp.ClientSession) -> None:
        url = f"{self.identity.url}/v1/sync/desired"
        while True:
            revision = self.queue.revision
            params = {"revision": str(revision), "wait": str(int(self.poll_wait))}
            timeout = aiohttp.ClientTimeout(total=self.poll_wait + 30.0, connect=30.0)
            try:
                async with session.get(url, params=params, timeout=timeout) as response:
                    if response.status == 304:
                        await response.read()
                        self._connected()
                        self._poll_backoff.reset()
                        continue
                    if response.status == 200:
                        doc = await response.json(content_type=None)
                        self._connected()
                        if isinstance(doc, dict) and "requests" in doc:
                            self._take_requests(session, doc["requests"])
                            if "revision" not in doc:  # nothing else: poll again at once
                                self._poll_backoff.reset()
                                continue
                        await self._apply(doc)
                        self._poll_backoff.reset()
                        continue
                    await self._refused(response)
                    await self._delay(self._poll_backoff, response)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
                self._failed("unreachable", _describe(e))
                await self._delay(self._poll_backoff, None)

    async def _apply(self, doc: Any) -> None:
        revision, apps = doc.get("revision"), doc.get("applications")
        if not isinstance(revision, int) or not isinstance(apps, list):
            raise ValueError("control's desired state has no revision or applications")
        vaults = doc.get("vaults")
        try:
            if self.on_vaults is not None and isinstance(vaults, list):
                await self.on_vaults(vaults)  # before the applications that may use them
            quotas = doc.get("quotas")
            if self.on_quotas is not None and isinstance(quotas, list):
                await self.on_quotas(quotas)  # before the applications they bound
            await self.on_desired(revision, apps)
        except Exception:
            log.exception("applying desired state revision %d failed; will retry", revision)
            await asyncio.sleep(self._poll_backoff.next())
            return
        await self.queue.set_revision(revision)
        self._status_version += 1  # the status now reports the new revision
        self._wakeup.set()

    def _take_requests(self, session: aiohttp.ClientSession, requests: Any) -> None:
        self.requests.take(session, requests)

    async def _refused(self, response: aiohttp.ClientResponse) -> None:
        message = f"HTTP {response.status}"
        with contextlib.suppress(Exception):
            body = await response.json(content_type=None)
            message = f"{message}: {body['error']['message']}"
        self._failed("refused" if response.status in (401, 403) else "unreachable", message)

    async def _push_forever(self, session: aiohttp.ClientSession) -> None:
        url = f"{self.identity.url}/v1/sync/status"
        while True:
            if self._status_sent == self._status_version and not await self.queue.pending():
                self._wakeup.clear()
                await self._wakeup.wait()
                await asyncio.sleep(0.05)  # gather what comes in the same breath into one batch
            batch = await self.queue.batch()
            version = self._status_version
            status = None
            if self._status is not None and self._status_sent != version:
                status = {**self._status, "revision": self.queue.revision}
            elif self._status is None and self._status_sent != version:
                status = {"instances": [], "revision": self.queue.revision}
            data, headers = _encode({"seq": batch.seq, "status": status, "events": batch.events})
            try:
                async with session.post(
                    url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=60.0)
                ) as response:
                    answer = (
                        await response.json(content_type=None) if response.status < 500 else None
                    )
                    if response.status == 200 and isinstance(answer, dict):
                        self._connected()
                        self._push_backoff.reset()
                        await self._acknowledged(batch, answer, version)
                        continue
                    if response.status == 409 and isinstance(answer, dict):
                        expected = answer.get("error", {}).get("expected")
                        if isinstance(expected, int):
                            log.warning(
                                "control expects status seq %d, not %d: renumbering",
                                expected,
                                batch.seq,
                            )
                            await self.queue.renumber(expected)
                            continue
                    await self._refused(response)
                    await self._delay(self._push_backoff, response)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
                self._failed("unreachable", _describe(e))
                await self._delay(self._push_backoff, None)

    async def _acknowledged(self, batch: Batch, answer: Mapping[str, Any], version: int) -> None:
        last = answer.get("seq")
        if answer.get("duplicate") and isinstance(last, int) and last > batch.seq:
            # Control is ahead of our numbering (our state was reset): send this batch again.
            log.warning(
                "control's last status seq is %d, ahead of ours (%d): renumbering", last, batch.seq
            )
            await self.queue.renumber(last + 1)
            return
        await self.queue.acknowledge(batch)
        if not answer.get("duplicate"):
            self._status_sent = version


def _encode(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A batch as compact JSON; gzip-compressed when it is larger than `GZIP_ABOVE`."""
    data = json.dumps(body, separators=(",", ":"), default=str).encode()
    headers = {"Content-Type": "application/json"}
    if len(data) > GZIP_ABOVE:
        data = gzip.compress(data, compresslevel=6, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return data, headers


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0] if text else type(e).__name__
