"""The LAN beacon of the site network (the decisions: `enforcer.network.beacon`): one UDP
socket on the beacon port (the WireGuard port + 1) that broadcasts this host's beacon on the
advertise address's network every `EVERY` seconds (a task of its own: a slow round of the mesh
does not silence it) and keeps what the other sites' hosts announce.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from enforcer.network.beacon import FORGET, LISTEN, Beacon, Heard, InvalidBeacon, broadcast_of

log = logging.getLogger(__name__)

__all__ = ["EVERY", "LanBeacon"]

EVERY = 1.0  # seconds between two beacons of this host (`beacon.LISTEN` hears two)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: LanBeacon) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.owner.received(data, str(addr[0]))


class LanBeacon:
    def __init__(self, port: int) -> None:
        self.port = port
        self.heard: dict[tuple[str, str], Heard] = {}  # (site, host) -> the latest beacon
        self.opened = 0.0  # monotonic time the socket was opened; 0 while closed
        self._transport: asyncio.DatagramTransport | None = None
        self._bad: set[str] = set()  # senders of something else, logged once
        self._beacon: tuple[bytes, tuple[str, int]] | None = None  # what to send, and where
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        if self._transport is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind(("0.0.0.0", self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot listen for the LAN's sites on udp port {self.port}: "
                          f"{exc.strerror or exc}") from None  # fmt: skip
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        self._transport = transport
        self.opened = time.monotonic()
        self._task = asyncio.create_task(self._repeat(), name="site-network-beacon")

    async def _repeat(self) -> None:
        while True:
            await asyncio.sleep(EVERY)
            if self._beacon is not None and self._transport is not None:
                self._transport.sendto(*self._beacon)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            self.opened = 0.0

    def received(self, data: bytes, sender: str) -> None:
        try:
            beacon = Beacon.from_bytes(data)
        except InvalidBeacon as exc:
            if sender not in self._bad:
                self._bad.add(sender)
                log.warning("site network: from %s: %s", sender, exc)
            return
        now = time.monotonic()
        self.heard[(beacon.site, beacon.host)] = Heard(beacon, sender, now)
        for key in [k for k, h in self.heard.items() if now - h.at > FORGET]:
            del self.heard[key]

    async def announce(self, beacon: Beacon, addresses: str, address: str) -> None:
        """Broadcast `beacon` on the network that holds `address` (`addresses`: what
        `ip -4 -o addr show` prints), now if it changed, and every EVERY seconds from now on."""
        await self.open()
        assert self._transport is not None
        sent = self._beacon
        self._beacon = (beacon.to_bytes(), (broadcast_of(addresses, address), self.port))
        if self._beacon != sent:
            self._transport.sendto(*self._beacon)

    async def listened(self) -> None:
        """Return once the socket has been open LISTEN seconds (the LAN's sites heard)."""
        await self.open()
        await asyncio.sleep(max(0.0, self.opened + LISTEN - time.monotonic()))
