"""This host's part in the site network of a multi-host site (DESIGN.md, "Site, hosts and the
scheduler"; the decisions: `enforcer.network.sitenet`; WireGuard: `enforcer.network.wireguard`).

`SiteMesh` reads the site's range from the store (the first host writes its own), refuses it
when it overlaps a network this host already routes (its LAN) or an older site's on the LAN
(announced there: `enforcer.network.beacon`, `enforcer.network.announce`), claims this host's
slice once, brings the WireGuard interface up and publishes its peer record under the host's
registration lease. Then, every `INTERVAL`, it reads the peers, programs the ones that should
be (the other live hosts: a dead host's record goes with its lease), puts its iptables hooks
back on top, notes the peers whose tunnel does not come up and the older sites on the LAN
whose range overlaps the site's. The reconciler asks it for each application
network's subnet (`subnet`), which waits until the slice is known.

The store is any object with the site store's `range`, `get`, `put` and `create` (structural:
the network layer sits below the site layer and imports none of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from enforcer.network.announce import LanBeacon
from enforcer.network.beacon import Beacon, clashes
from enforcer.network.names import NAMES, NameRecord, NameTable, records_from_json, records_to_json
from enforcer.network.resolver import Resolver
from enforcer.network.sitenet import (
    PEERS,
    RANGE,
    SINCE,
    SLICES,
    SUBNETS,
    InvalidPeer,
    Peer,
    SlicePlan,
    app_pairs,
    choose_slice,
    network_subnet,
    overlaps,
    peer_set,
    silent_peers,
)
from enforcer.network.wireguard import SiteNetworkRefused, WireGuard, WireGuardError, _run

log = logging.getLogger(__name__)

__all__ = ["SiteMesh", "Store", "StoreEntry"]

INTERVAL = 1.0
BRIDGE_PREFIX = "ew-"  # `enforcer.reconcile.instances.bridge_name`
GATEWAY_LABEL = "edgeward.site-network"  # a network of the site network: its gateway, for DNS


class StoreEntry(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> bytes: ...


class Store(Protocol):
    async def get(self, key: str) -> StoreEntry | None: ...
    async def range(self, prefix: str) -> tuple[Sequence[StoreEntry], int]: ...
    async def put(self, key: str, value: bytes, lease: int | None = None) -> int: ...
    async def create(self, key: str, value: bytes, lease: int | None = None) -> int | None: ...


class SiteMesh:
    def __init__(
        self,
        store: Store,
        host: str,
        address: str,
        wireguard: WireGuard,
        plan: SlicePlan,
        lease: Callable[[], int | None],
        own_names: Callable[[], list[NameRecord]] = list,
        networks: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
        site: str = "",
    ) -> None:
        self.store = store
        self.host = host
        self.site = site or host  # its name, in what it announces on the LAN
        self.lan = LanBeacon(wireguard.port + 1)
        self.since: float | None = None  # when the site took its range (the store's record)
        self.clashes: list[str] = []  # older sites on the LAN whose range overlaps the site's
        self.lan_error = ""
        self.address = address  # this host's address on the LAN (its endpoint)
        self.wg = wireguard
        self.plan = plan  # this host's configuration; the site's own once read
        self.lease = lease  # the registration's lease now; None while not registered
        self.slice: ipaddress.IPv4Network | None = None
        self.peers: tuple[Peer, ...] = ()
        self.unreachable: list[str] = []
        self.refused: list[str] = []  # published peers left out, and why
        self.error = ""
        self.own_names = own_names  # this host's instances, with their addresses
        self.networks = networks  # the engine's application networks (Docker's dicts)
        self.names = NameTable()
        self.resolver = Resolver(lambda: self.names)
        self._names_published: tuple[int, bytes] | None = None
        self._subnets_published: tuple[int, bytes] | None = None
        self._ready = asyncio.Event()
        self._published: tuple[int, bytes] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="site-network")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.resolver.close()
        self.lan.close()
        await self.wg.close()

    async def leave(self) -> None:
        """The host left the site: no interface, no chains, no process remain."""
        await self.stop()
        await self.wg.down()

    def status(self) -> dict[str, Any]:
        return {
            "interface": self.wg.interface,
            "wireguard": self.wg.mode,
            "public-key": self.wg.public_key,
            "slice": str(self.slice) if self.slice else "",
            "range": str(self.plan.range),
            "peers": [
                {
                    "host": p.host,
                    "endpoint": p.endpoint,
                    "slice": str(p.slice),
                    "reachable": p.host not in self.unreachable,
                }
                for p in self.peers
            ],
            "unreachable": [
                f"peer {h} is unreachable: no WireGuard handshake with "
                f"{next((p.endpoint for p in self.peers if p.host == h), '?')}"
                for h in self.unreachable
            ],
            "refused": list(self.refused),
            "lan-clashes": list(self.clashes),
            "error": self.error,
        }

    def check(self) -> str:
        """The site network's line in the health checks: "ok", or what is wrong."""
        problems = [self.error] if self.error else []
        problems += self.status()["unreachable"] + self.refused + self.clashes
        problems += [self.lan_error] if self.lan_error else []
        return "; ".join(problems) or "ok"

    # -- what the reconciler asks --------------------------------------------------------
    async def subnet(self, used: Iterable[str], timeout: float = 30) -> str:
        """A free subnet of this host's slice for a new application network; "" (Docker's own
        pools: this host's alone) where there is no WireGuard."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise WireGuardError(
                f"the site network is not up ({self.error or 'no slice yet'})"
            ) from None
        if self.slice is None:  # no WireGuard here: a network of this host's alone
            return ""
        busy = [ipaddress.IPv4Network(u, strict=False) for u in used]
        busy.append(ipaddress.IPv4Network(f"{self.wg_address()}/32"))
        found = network_subnet(self.slice, self.plan.network_prefix, busy)
        if found is None:
            raise WireGuardError(f"this host's slice {self.slice} has no free subnet left")
        return str(found)

    def wg_address(self) -> ipaddress.IPv4Address:
        assert self.slice is not None
        return _own_address(self.slice)

    # -- the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                if self.slice is None:
                    await self._setup()
                await self._sync()
                self.error = ""
            except WireGuardError as exc:
                if isinstance(exc, SiteNetworkRefused):
                    self._ready.set()  # networks are made, each of this host's alone
                if exc.args[0] != self.error:
                    log.error("site network: %s", exc)
                self.error = str(exc)
            except Exception as exc:  # the store, mostly: tried again next round
                log.warning("site network: %s", exc)
                self.error = str(exc)
            await asyncio.sleep(INTERVAL)

    async def _setup(self) -> None:
        await self.store.create(RANGE, self.plan.to_json())
        found = await self.store.get(RANGE)
        if found is not None:
            site = SlicePlan.from_json(found.value)
            if site != self.plan:
                log.info("site network: the site's range is %s", site.range)
            self.plan = site
        clash = overlaps(self.plan.range, await self._routed())
        if clash:
            raise SiteNetworkRefused("; ".join(clash) + ": set [network] range to a free range")
        await self.store.create(SINCE, f"{time.time():.3f}".encode())
        found = await self.store.get(SINCE)
        self.since = float(found.value) if found is not None else time.time()
        older = await self._lan(listen=True)
        if older:
            raise SiteNetworkRefused("; ".join(older))
        entries, _ = await self.store.range(SLICES)
        taken = {}
        for e in entries:
            with contextlib.suppress(ValueError):
                taken[int(e.key[len(SLICES) :])] = e.value.decode()
        while True:
            index = choose_slice(self.plan, taken, self.host)
            if index is None:
                raise WireGuardError(f"the site's range {self.plan.range} has no free slice left")
            if taken.get(index) == self.host:
                break
            if await self.store.create(f"{SLICES}{index}", self.host.encode()) is not None:
                break
            holder = await self.store.get(f"{SLICES}{index}")  # another host was quicker
            taken[index] = holder.value.decode() if holder is not None else "?"
        host_slice = self.plan.slice(index)
        await self.wg.up(_own_address(host_slice))
        self.slice = host_slice
        log.info("site network: slice %s on %s (%s)", self.slice, self.wg.interface, self.wg.mode)
        self._ready.set()

    async def _routed(self) -> dict[str, ipaddress.IPv4Network]:
        """The networks this host routes that are not the site network's own."""
        out = await _run("ip", "-4", "route", "show")
        found = {}
        for line in out.splitlines():
            parts = line.split()
            if not parts or parts[0] == "default" or "dev" not in parts:
                continue
            dev = parts[parts.index("dev") + 1]
            if dev == self.wg.interface or dev.startswith(BRIDGE_PREFIX):
                continue  # the tunnel, and the application networks' bridges
            with contextlib.suppress(ValueError):
                found[f"the network on {dev}"] = ipaddress.IPv4Network(parts[0], strict=False)
        return found

    async def _sync(self) -> None:
        assert self.slice is not None
        if self.wg.process_gone:
            log.warning("site network: wireguard-go exited; starting it again")
            self.wg.mode = ""
            await self.wg.up(self.wg_address())
        await self._publish()
        entries, _ = await self.store.range(PEERS)
        published = {}
        for e in entries:
            try:
                peer = Peer.from_json(e.value)
            except InvalidPeer as exc:
                log.error("site store: %s: %s", e.key, exc)
                continue
            published[peer.host] = peer
        peers, refused = peer_set(self.host, published, published.keys(), self.plan)
        if refused != self.refused:
            for why in refused:
                log.error("site network: %s", why)
        self.refused = refused
        if peers != self.peers:
            await self.wg.set_peers(peers)
            log.info("site network: peers %s", ", ".join(p.host for p in peers) or "none")
            self.peers = peers
        shakes = await self.wg.handshakes()
        self.unreachable = silent_peers(self.peers, shakes, time.time(), self.wg.since)
        pairs = await self._names()
        await self.wg.allow(self.slice, self.plan.range, pairs)
        self.clashes = await self._lan()

    async def _lan(self, listen: bool = False) -> list[str]:
        """Announce the site's range on the LAN (`listen`: and hear the others first); why
        another site's older overlapping range refuses this site's (`beacon.clashes`)."""
        assert self.since is not None
        me = Beacon(self.site, self.host, self.plan.range, self.since)
        try:
            await self.lan.announce(me, await _run("ip", "-4", "-o", "addr"), self.address)
            if listen:
                await self.lan.listened()
            self.lan_error = ""
        except OSError as exc:
            if str(exc) != self.lan_error:
                log.error("site network: %s", exc)
            self.lan_error = str(exc)
        return clashes(me, self.lan.heard.values(), time.monotonic())

    async def _names(self) -> list[tuple[str, str]]:
        """Publish this host's names and application subnets; answer every host's names on
        the application networks; the (remote, local) subnets of one application each."""
        nets = await self.networks() if self.networks is not None else []
        local = subnets(nets)
        lease = self.lease()
        if lease is not None:
            names = records_to_json(self.own_names())
            if self._names_published != (lease, names):
                await self.store.put(NAMES + self.host, names, lease)
                self._names_published = (lease, names)
            body = json.dumps(local, sort_keys=True).encode()
            if self._subnets_published != (lease, body):
                await self.store.put(SUBNETS + self.host, body, lease)
                self._subnets_published = (lease, body)
        remote: dict[str, dict[str, str]] = {}
        for e in (await self.store.range(SUBNETS))[0]:
            host = e.key[len(SUBNETS) :]
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                if host != self.host:
                    remote[host] = {str(k): str(v) for k, v in json.loads(e.value).items()}
        entries, _ = await self.store.range(NAMES)
        by_host = {}
        for e in entries:
            try:
                by_host[e.key[len(NAMES) :]] = records_from_json(e.value)
            except ValueError as exc:
                log.error("site store: %s: %s", e.key, exc)
        self.names = NameTable(by_host)
        await self.resolver.serve(gateways(nets))
        return app_pairs(local, remote)

    async def _publish(self) -> None:
        lease = self.lease()
        if lease is None or self.slice is None:
            return
        port = self.wg.port
        body = Peer(self.host, self.wg.public_key, f"{self.address}:{port}", self.slice).to_json()
        if self._published != (lease, body):
            await self.store.put(PEERS + self.host, body, lease)
            self._published = (lease, body)


def gateways(networks: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """The site network's gateways (where names are answered) -> (tenant, app)."""
    out = {}
    for n in networks:
        labels = n.get("Labels") or {}
        gateway = labels.get(GATEWAY_LABEL)
        if gateway and "edgeward.app" in labels:
            out[str(gateway)] = (
                str(labels.get("edgeward.tenant", "")),
                str(labels["edgeward.app"]),
            )
    return out


def _own_address(host_slice: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The host's own address on the site network: its slice's last but one."""
    return host_slice.broadcast_address - 1


def subnets(networks: list[dict[str, Any]]) -> dict[str, str]:
    """This host's application networks on the site network: "tenant/app" -> subnet."""
    out = {}
    for n in networks:
        labels = n.get("Labels") or {}
        configs = (n.get("IPAM") or {}).get("Config") or []
        if labels.get(GATEWAY_LABEL) and "edgeward.app" in labels and configs:
            key = f"{labels.get('edgeward.tenant', '')}/{labels['edgeward.app']}"
            out[key] = str(configs[0].get("Subnet", ""))
    return {k: v for k, v in out.items() if v}
