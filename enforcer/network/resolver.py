"""The site network's DNS responder: one UDP socket on each application network's gateway
address (port 53), set as the DNS server of that network's containers. Docker's embedded DNS
answers the names of the host's own network and forwards the rest here; this answers the
application's names on any host of the site (`enforcer.network.names`) and forwards what it
does not know to the host's own name servers (/etc/resolv.conf), SERVFAIL when none answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

from enforcer.network.names import REFUSED, SERVFAIL, NameTable, Query, answer, parse_query

log = logging.getLogger(__name__)

__all__ = ["Resolver", "upstream_servers"]

PORT = 53
UPSTREAM_TIMEOUT = 2.0


def upstream_servers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The host's name servers, loopback ones left out (they are not the containers' to ask
    from a gateway address, and Docker's own 127.0.0.11 is inside each container)."""
    out = []
    with contextlib.suppress(OSError):
        for line in resolv_conf.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and not parts[1].startswith("127."):
                out.append(parts[1])
    return out


class _Server(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver, owner: tuple[str, str]) -> None:
        self.resolver = resolver
        self.owner = owner  # (tenant, app) of the network whose gateway this is
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = parse_query(data)
        except ValueError:
            return  # not a query: nothing to answer
        found = self.resolver.table().resolve(*self.owner, query.name)
        if found is not None:
            self._send(answer(query, found), addr)
        else:
            self.resolver.spawn(self._forward(data, query, addr))

    async def _forward(self, data: bytes, query: Query, addr: tuple[str, int]) -> None:
        for server in self.resolver.upstream:
            with contextlib.suppress(OSError, TimeoutError):
                reply = await _ask(server, data)
                self._send(reply, addr)
                return
        self._send(answer(query, [], SERVFAIL if self.resolver.upstream else REFUSED), addr)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


class _Once(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.reply.done():
            self.reply.set_result(data)


async def _ask(server: str, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Once, remote_addr=(server, PORT))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(proto.reply, UPSTREAM_TIMEOUT)
    finally:
        transport.close()


class Resolver:
    def __init__(self, table: Callable[[], NameTable], upstream: list[str] | None = None) -> None:
        self.table = table
        self.upstream = upstream_servers() if upstream is None else upstream
        self._open: dict[str, tuple[tuple[str, str], asyncio.DatagramTransport]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def addresses(self) -> list[str]:
        return sorted(self._open)

    def spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def serve(self, gateways: Mapping[str, tuple[str, str]]) -> None:
        """Answer on exactly these gateway addresses (address -> (tenant, app))."""
        for address in list(self._open):
            if self._open[address][0] != gateways.get(address):
                self._open.pop(address)[1].close()
        loop = asyncio.get_running_loop()
        for address, owner in gateways.items():
            if address in self._open:
                continue
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda o=owner: _Server(self, o),  # type: ignore[misc]
                    local_addr=(address, PORT),
                )
            except OSError as exc:  # the bridge is not up yet: the next round tries again
                log.debug("site network: cannot answer DNS on %s: %s", address, exc)
                continue
            self._open[address] = (owner, transport)
            log.info("site network: names answered on %s for %s/%s", address, *owner)

    def close(self) -> None:
        for _, transport in self._open.values():
            transport.close()
        self._open.clear()
        for task in self._tasks:
            task.cancel()
