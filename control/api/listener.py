"""Control's HTTPS listener: TLS handshakes a few at a time, in arrival order (`admission`).

asyncio starts the TLS handshake of every connection the moment it is accepted. When
thousands of sites reconnect at once (control back after an outage) that is thousands of
handshakes interleaved on one event loop: each takes as long as all of them together, many
run past the sites' connect timeout (the work lost, the site back later for another), and the
loop answers nothing else meanwhile. `GatedTLSSite` accepts connections without TLS, holds
them unread in arrival order and starts as many handshakes at a time as its event loop keeps
up with (`admission.handshake_slots`); past `admission.connection_budget` open connections a
new one is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from asyncio import sslproto
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from control.api.admission import (
    HANDSHAKES,
    MAX_HANDSHAKES,
    MIN_HANDSHAKES,
    admit_connection,
    connection_budget,
    handshake_slots,
)

HANDSHAKE_TIMEOUT = 30.0  # seconds a handshake may take once started (the site's own timeout)
TICK = 0.1  # seconds between looks at the event loop's lag
# A connection that waited this long for its handshake is closed unread: its site gave up
# (the enforcer's connect timeout is 30 s) and a handshake with it would be work for nothing.
STALE_AFTER = 30.0


class _Gate:
    """The connections of one listener: waiting for a handshake, in one, and open."""

    def __init__(
        self,
        factory: Callable[[], asyncio.BaseProtocol],
        context: ssl.SSLContext,
        handshakes: int,
        budget: int,
        count: Callable[[str], None],
        stale_after: float,
    ) -> None:
        self.factory, self.context, self.count = factory, context, count
        self.stale_after = stale_after
        self.slots, self.budget = handshakes, budget
        self.waiting: deque[tuple[float, asyncio.Transport]] = deque()  # (arrival, connection)
        self.handshaking = 0
        self.open = 0  # connections kept (waiting, in a handshake or served) and not yet lost
        self.refused = 0  # connections closed at once: `budget` reached

    def protocol(self) -> asyncio.Protocol:
        return _Waiting(self)

    def arrived(self, transport: asyncio.Transport) -> bool:
        """Queue a new connection for its handshake (True), or close it at once (False)."""
        if not admit_connection(self.open, self.budget):
            self.refused += 1
            self.count("connections_refused_total")
            transport.abort()
            return False
        self.open += 1
        transport.pause_reading()  # the ClientHello waits in the kernel until its turn
        self.waiting.append((time.monotonic(), transport))
        self._start_next()
        return True

    def lost(self) -> None:
        self.open -= 1

    def _start_next(self) -> None:
        stale = time.monotonic() - self.stale_after
        while self.handshaking < self.slots and self.waiting:
            arrived, transport = self.waiting.popleft()
            if arrived < stale:
                self.count("connections_stale_total")
                transport.abort()
            if transport.is_closing():
                continue
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            protocol = _Counted(
                self,
                loop,
                self.factory(),
                self.context,
                waiter,
                server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            transport.resume_reading()
            self.handshaking += 1
            self.count("tls_handshakes_started_total")
            waiter.add_done_callback(self._handshake_done)

    def _handshake_done(self, waiter: asyncio.Future[Any]) -> None:
        if waiter.cancelled() or waiter.exception() is not None:
            self.count("tls_handshakes_failed_total")  # the peer's problem: asyncio logged it
        self.handshaking -= 1
        self._start_next()

    async def follow_the_loop(self, low: int, high: int) -> None:
        """Adjust the handshake slots to the event loop's lag (`admission.handshake_slots`)."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(TICK)
            self.slots = handshake_slots(self.slots, loop.time() - started - TICK, low, high)
            self._start_next()

    def close(self) -> None:
        while self.waiting:
            self.waiting.popleft()[1].abort()


class _Waiting(asyncio.Protocol):
    """An accepted connection before its handshake: reads nothing."""

    def __init__(self, gate: _Gate) -> None:
        self.gate = gate
        self.kept = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.kept = self.gate.arrived(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.kept:
            self.gate.lost()


class _Counted(sslproto.SSLProtocol):
    """asyncio's TLS protocol, telling the gate when its connection is gone."""

    def __init__(self, gate: _Gate, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate

    def connection_lost(self, exc: BaseException | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self.gate.lost()


class GatedTLSSite(web.TCPSite):
    """`web.TCPSite` with TLS, handshakes admitted by a `_Gate` (see the module documentation)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        open_files: int,
        backlog: int = 128,
        reuse_address: bool | None = None,
        handshakes: int = HANDSHAKES,
        handshake_range: tuple[int, int] = (MIN_HANDSHAKES, MAX_HANDSHAKES),
        count: Callable[[str], None] = lambda name: None,
        stale_after: float = STALE_AFTER,
    ) -> None:
        """`count` is called with a counter's name: ``connections_refused_total``,
        ``connections_stale_total``, ``tls_handshakes_started_total``,
        ``tls_handshakes_failed_total``."""
        super().__init__(runner, host, port, backlog=backlog, reuse_address=reuse_address)
        server = runner.server
        assert server is not None
        budget = connection_budget(open_files, backlog)
        self.gate = _Gate(server, ssl_context, handshakes, budget, count, stale_after)
        self.handshake_range = handshake_range
        self._follower: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return super().name.replace("http://", "https://", 1)

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.gate.protocol,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
        self._follower = asyncio.create_task(self.gate.follow_the_loop(*self.handshake_range))

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        self.gate.close()
        await super().stop()
