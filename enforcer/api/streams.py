"""Streamed answers (logs, events): chunked, ended when the source ends, the client leaves or the
server stops; the source is pulled one item at a time, so a slow client slows the source down
instead of making the enforcer buffer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from aiohttp import web

__all__ = ["stream_response"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_POLL_S = 0.5  # how often a waiting stream checks whether its client is still there
_HEADER_WAIT_S = 0.5  # a stream waits this long for its first item before sending headers


async def stream_response(
    request: web.Request,
    items: AsyncIterator[T],
    content_type: str,
    encode: Callable[[T], bytes],
    stopping: asyncio.Event,
) -> web.StreamResponse:
    """Streams `items` (chunked) until they end, the client leaves or `stopping` is set.

    Waits briefly for the first item before sending headers, so that an error raised when
    iteration starts (NotFound) still gets its own status. Each item is written (and drained
    to the client's socket) before the next is pulled."""
    feed = _Feed(items, request, stopping)
    try:
        first = await feed.next(timeout=_HEADER_WAIT_S)  # errors here: answered as JSON
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            item = first
            while not isinstance(item, _End):
                if not isinstance(item, _Timeout):
                    await response.write(encode(item))
                item = await feed.next()
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        except Exception:
            # headers are sent: the status cannot change any more; end the stream
            log.exception("%s %s failed while streaming", request.method, request.path)
        return response
    finally:
        await feed.close()


class _End:
    """The feed ended: the iterator is exhausted, the client left or the server stops."""


class _Timeout:
    """No item yet."""


class _Feed(Generic[T]):
    """Pulls from an async iterator while watching for the client leaving (aiohttp 3.9+ does
    not cancel handlers on disconnect) and for the server stopping."""

    def __init__(self, items: AsyncIterator[T], request: web.Request, stopping: asyncio.Event):
        self._items = items
        self._request = request
        self._stopping = stopping
        self._next: asyncio.Future[T] | None = None
        self._stop_wait: asyncio.Task[Any] | None = None

    async def next(self, timeout: float | None = None) -> T | _End | _Timeout:
        """The next item; `_Timeout` when `timeout` passes first; raises what the iterator
        raises."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._items.__anext__())
        if self._stop_wait is None:
            self._stop_wait = asyncio.ensure_future(self._stopping.wait())
        waited = 0.0
        while not self._next.done():
            step = _POLL_S if timeout is None else min(_POLL_S, timeout - waited)
            await asyncio.wait(
                {self._next, self._stop_wait}, timeout=step, return_when=asyncio.FIRST_COMPLETED
            )
            waited += step
            if self._next.done():
                break
            if self._stopping.is_set() or _client_gone(self._request):
                return _End()
            if timeout is not None and waited >= timeout:
                return _Timeout()
        done, self._next = self._next, None
        try:
            return done.result()
        except StopAsyncIteration:
            return _End()

    async def close(self) -> None:
        for task in (self._next, self._stop_wait):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._next is not None and self._next.done() and not self._next.cancelled():
            self._next.exception()  # retrieved: no "exception was never retrieved" warning
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                log.debug("closing a stream's source failed", exc_info=True)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
