"""Control's log requests for an instance another host of the site runs, relayed through the
site store (the keys and records: `enforcer.site.cluster.logrecords`).

Control reaches the leader only. The leader `ask`s: it puts the request under the host's
prefix on a fresh lease, waits for the reply at most `ANSWER_WAIT` seconds, then revokes the
lease (the request and the reply go with it). Every host `serve`s its own prefix while it is in
the site: it answers each request (a few at once) with `answer`, its own engine's lines, and
puts the reply on the request's lease, so a reply outlives no request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from enforcer.site.cluster.logrecords import (
    ANSWER_WAIT,
    LEASE_TTL,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    new_request_id,
    reply_key,
    request_id,
    request_key,
    requests_of,
)
from enforcer.site.kv.base import Compacted, EventKind, KVError, LeaseNotFound, SiteKV

__all__ = ["ANSWERS_AT_ONCE", "LogRelay"]

log = logging.getLogger(__name__)

ANSWERS_AT_ONCE = 3  # requests a host reads the logs for at the same time
RETRY = 1.0  # seconds before watching the store again after it failed
CLEANUP_WAIT = 5.0  # seconds the leader gives the store to take the request back

Answer = Callable[[Any], Awaitable[dict[str, Any]]]


def _failed(error: str) -> dict[str, Any]:
    return {"lines": [], "error": error}


class LogRelay:
    def __init__(
        self,
        kv: SiteKV,
        host: str,
        answer: Answer,
        *,
        wait: float = ANSWER_WAIT,
        ttl: float = LEASE_TTL,
        at_once: int = ANSWERS_AT_ONCE,
    ) -> None:
        self.kv = kv
        self.host = host
        self.answer = answer
        self.wait = wait
        self.ttl = ttl
        self.serving = asyncio.Event()  # set once the host watches its requests
        self._slots = asyncio.Semaphore(at_once)
        self._seen: set[str] = set()  # the request keys taken, until they are deleted
        self._task: asyncio.Task[None] | None = None
        self._answering: set[asyncio.Task[None]] = set()

    # -- the host that runs the instance ---------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.serve(), name="log-relay")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._answering) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    async def serve(self) -> None:
        """Answer the requests under this host's prefix, until cancelled."""
        prefix = requests_of(self.host)
        while True:
            try:
                entries, revision = await self.kv.range(prefix)
                self._seen &= {e.key for e in entries}
                for entry in entries:
                    self._take(entry.key, entry.value, entry.lease)
                self.serving.set()
                async with contextlib.aclosing(self.kv.watch(prefix, revision + 1)) as events:
                    async for event in events:
                        if event.kind is EventKind.PUT:
                            self._take(event.key, event.value, event.lease)
                        else:
                            self._seen.discard(event.key)
            except Compacted:
                log.info("log requests of host %s: watch compacted, listing again", self.host)
            except KVError as exc:
                log.warning("host %s cannot watch for log requests: %s", self.host, exc)
                await asyncio.sleep(RETRY)

    def _take(self, key: str, value: bytes, lease: int | None) -> None:
        request = request_id(key, self.host)
        if request is None or key in self._seen:
            return
        self._seen.add(key)
        if lease is None:  # its reply would stay for ever: the leader always gives one
            log.error("site store: %s is a log request without a lease; not answered", key)
            return
        task = asyncio.create_task(self._answer(request, value, lease), name="log-relay-answer")
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, request: str, value: bytes, lease: int) -> None:
        async with self._slots:
            try:
                reply = await self.answer(decode_request(value))
            except ValueError as exc:
                reply = _failed(str(exc))
            except Exception as exc:  # the leader hears why rather than waiting in vain
                log.exception("log request %s failed on host %s", request, self.host)
                reply = _failed(f"host {self.host} could not read the logs: {exc}")
            await self._reply_with(request, reply, lease)

    async def _reply_with(self, request: str, reply: dict[str, Any], lease: int) -> None:
        """The reply into the store; one the store refuses becomes an error the leader sees
        at once, rather than waiting in vain."""
        body = encode_reply(reply)
        for _ in range(2):  # the reply, else why it could not go
            try:
                await self.kv.put(reply_key(request), body, lease)
                return
            except LeaseNotFound:
                log.info("log request %s: the leader stopped waiting for the reply", request)
                return
            except Exception as exc:  # logged, not lost in a task nobody awaits
                log.warning("log request %s: the reply did not reach the store: %s", request, exc)
                why = f"host {self.host} could not hand its reply to the leader: {exc}"
                body = encode_reply(_failed(why[:1000]))

    # -- the leader ------------------------------------------------------------------------
    async def ask(self, host: str, request: dict[str, Any], site: str) -> dict[str, Any]:
        """`request` answered by `host`; an error naming the host when it does not answer
        within `wait` seconds or the store fails, never a hang."""
        lease: int | None = None
        try:
            async with asyncio.timeout(self.wait):
                lease = (await self.kv.grant(self.ttl)).id
                name = new_request_id()
                key, body = request_key(host, name), encode_request(request)
                revision = await self.kv.put(key, body, lease)
                data = await self._reply(reply_key(name), revision + 1)
            return decode_reply(data, host)
        except TimeoutError:
            return _failed(f"host {host} of site {site} did not answer within {self.wait:g} s")
        except KVError as exc:
            return _failed(f"cannot hand the log request to host {host} of site {site}: {exc}")
        finally:
            if lease is not None:  # the request and its reply go
                with contextlib.suppress(KVError, TimeoutError):
                    async with asyncio.timeout(CLEANUP_WAIT):
                        await self.kv.revoke(lease)

    async def _reply(self, key: str, start: int) -> bytes:
        """The value put at `key` from revision `start` on (KVError: the store failed)."""
        while True:
            try:
                async with contextlib.aclosing(self.kv.watch(key, start)) as events:
                    async for event in events:
                        if event.kind is EventKind.PUT and event.key == key:
                            return event.value
            except Compacted:
                pass
            entries, revision = await self.kv.range(key)  # what the watch may have missed
            for entry in entries:
                if entry.key == key:
                    return entry.value
            start = revision + 1
