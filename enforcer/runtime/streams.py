"""Blocking iterators of the docker SDK (events, logs) read on a thread, awaited on the loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


_END = object()
READ_AHEAD = 64  # items a stream's thread reads ahead of its consumer at most


async def thread_iter(
    it: Iterator[T], translate: Callable[[BaseException], Exception]
) -> AsyncIterator[T]:
    """Iterate a blocking iterator on its own thread, without blocking the loop.

    The thread reads at most `READ_AHEAD` items ahead of the consumer, then waits: a slow
    consumer (a client reading logs slowly) slows the reading down instead of making the
    enforcer buffer without bound."""
    loop = asyncio.get_running_loop()
    aq: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()
    room = threading.Semaphore(READ_AHEAD)

    def pump() -> None:
        try:
            for item in it:
                while not room.acquire(timeout=0.5):
                    if stop.is_set():
                        return
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(aq.put_nowait, item)
        except Exception as exc:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(aq.put_nowait, translate(exc))
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(aq.put_nowait, _END)

    thread = threading.Thread(target=pump, name="docker-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = await aq.get()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            room.release()
            yield item
    finally:
        stop.set()
        close = getattr(it, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
