"""A watch over etcd's JSON gateway: one long POST whose answer is a stream of JSON messages.

    async with etcd.watch("apps/", prefix=True, start_revision=listed.revision + 1) as watch:
        async for events in watch:          # a tuple of WatchEvent per etcd message, in order
            ...

The stream's traps, each turned into a typed error the caller acts on:
- a watch from a compacted revision is first `created`, then `canceled` with the
  `compact_revision`: the first iteration raises `Compacted` (re-list, then watch again from
  the listed revision + 1);
- a stream that fails answers 200 and ends with an `{"error": ...}` object, or just ends, or
  the connection drops: `Unavailable` / `Unreachable`. `watch.next_revision` is where to
  resume, so nothing is missed and nothing seen twice;
- with `idle_timeout`, the watch asks for progress notifications and a stream silent for
  longer (a stopped member) raises `Unavailable`. The member must send them more often than
  that (`--experimental-watch-progress-notify-interval`, set by the managed member).
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp

from enforcer.site.etcd.errors import (
    AuthFailed,
    Compacted,
    RequestFailed,
    Unavailable,
    Unreachable,
    error_from_body,
    parse_answer,
)
from enforcer.site.etcd.records import WatchEvent, event_from, number

if TYPE_CHECKING:
    from enforcer.site.etcd.gateway import EtcdGateway

__all__ = ["Watch"]


class Watch:
    """One watch stream; use as an async context manager, then iterate batches of events."""

    def __init__(
        self,
        gateway: EtcdGateway,
        request: dict[str, Any],
        start_revision: int,
        idle_timeout: float | None,
    ) -> None:
        self._gateway = gateway
        self._request = request
        self._idle_timeout = idle_timeout
        self._session: aiohttp.ClientSession | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._buffer = b""
        self._eof = False
        self.endpoint = ""
        self.next_revision = start_revision
        """The revision to watch from to resume after this watch fails: the one after the last
        event delivered (or, for a watch from now, after the revision it started at)."""

    async def __aenter__(self) -> Watch:
        await self._open()
        try:
            first = await self._message(self._gateway.timeout)
            self._check(first)
            if not self.next_revision:
                self.next_revision = number(first.get("header", {}), "revision") + 1
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> tuple[WatchEvent, ...]:
        while True:
            message = await self._message(self._idle_timeout)
            self._check(message)
            events = tuple(event_from(e) for e in message.get("events", ()))
            if events:
                self.next_revision = events[-1].revision + 1
                return events

    async def _open(self) -> None:
        gateway = self._gateway
        failures: list[str] = []
        for endpoint in gateway.rotation():
            session = gateway.session()
            try:
                response = await session.post(
                    endpoint + "/v3/watch",
                    json=self._request,
                    timeout=aiohttp.ClientTimeout(
                        total=None, connect=gateway.timeout, sock_read=None
                    ),
                )
            except BaseException as e:
                await session.close()
                if isinstance(e, aiohttp.ClientSSLError):
                    raise AuthFailed(endpoint, f"TLS handshake failed: {e}") from None
                if isinstance(e, aiohttp.ClientConnectorError):
                    failures.append(f"{endpoint} ({e.os_error.strerror or e})")
                    gateway.advance(endpoint)
                    continue
                if isinstance(e, TimeoutError | aiohttp.ClientError):
                    gateway.advance(endpoint)
                    why = str(e) or "timeout"
                    raise Unavailable(endpoint, f"the watch could not start: {why}") from None
                raise
            self.endpoint = endpoint
            self._session, self._response = session, response
            if response.status != 200:
                body = await response.read()
                await self._close()
                parse_answer(endpoint, body, response.status, stream=True)
                raise RequestFailed(endpoint, f"the watch answered HTTP {response.status}")
            gateway.settle(endpoint)
            return
        raise Unreachable(
            ", ".join(gateway.endpoints), "no member accepted a connection: " + "; ".join(failures)
        )

    async def _close(self) -> None:
        """Drop the stream's connection at once, without waiting (a TLS close would wait for
        the member's close_notify, and a cancelled caller may not wait), then the session."""
        session, response = self._session, self._response
        self._session = self._response = None
        if response is not None:
            connection = response.connection
            if connection is not None and connection.transport is not None:
                connection.transport.abort()
            response.close()
        if session is not None:
            await session.close()

    def _check(self, message: dict[str, Any]) -> None:
        """Raise what a message that ends the watch means."""
        if "error" in message:
            error = error_from_body(self.endpoint, message, 200)
            if isinstance(error, RequestFailed):  # "server closed the stream", "transport is
                # closing": the member went away; watch again from `next_revision`
                raise Unavailable(self.endpoint, f"the watch stream ended: {error.reason}")
            raise error
        if message.get("canceled"):
            compact = number(message, "compact_revision")
            if compact:
                raise Compacted(self.endpoint, compact, self.next_revision)
            reason = message.get("cancel_reason") or "no reason given"
            raise Unavailable(self.endpoint, f"the watch was canceled: {reason}")

    async def _message(self, timeout: float | None) -> dict[str, Any]:
        """The next JSON message of the stream (one per line; the last may lack its newline)."""
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline or (self._eof and line.strip()):
                self._buffer = rest
                if not line.strip():
                    continue
                return self._decode(line)
            if self._eof:
                raise Unavailable(self.endpoint, "the watch stream ended")
            self._buffer += await self._read(timeout)

    async def _read(self, timeout: float | None) -> bytes:
        if self._response is None:
            raise Unavailable(self.endpoint, "the watch is closed")
        try:
            chunk = await asyncio.wait_for(self._response.content.readany(), timeout)
        except TimeoutError:
            raise Unavailable(
                self.endpoint, f"the watch stream was silent for {timeout:g}s"
            ) from None
        except aiohttp.ClientError as e:
            raise Unreachable(self.endpoint, f"the watch stream broke: {e}") from None
        if not chunk:
            self._eof = True
        return chunk

    def _decode(self, line: bytes) -> dict[str, Any]:
        try:
            body = json.loads(line)
        except ValueError:
            raise RequestFailed(
                self.endpoint, f"the watch sent a message that is not JSON: {line[:200]!r}"
            ) from None
        if not isinstance(body, dict):
            raise RequestFailed(self.endpoint, f"the watch sent {type(body).__name__} JSON")
        if "error" in body:
            return body
        result = body.get("result")
        if not isinstance(result, dict):
            raise RequestFailed(self.endpoint, f"the watch sent a message without a result: {body}")
        return result
