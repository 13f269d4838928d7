"""The site network's decisions (pure): address slices, overlaps and WireGuard peers.

A multi-host site has one container address range (`[network] range`, 10.213.0.0/16 by
default). Each host holds one slice of it (a /22 by default: `host-prefix`), claimed once in
the site store and never given to another host (`SLICES`<index> -> host id, created only when
absent, never deleted); each application network on a host takes a subnet of that host's slice
(a /26 by default: `network-prefix`). So instance addresses never collide across hosts, and a
host's slice is the one route the others need to reach everything it runs.

Each live host publishes its WireGuard public key, endpoint and slice under its registration's
lease (`PEERS`<host>): a host that dies or leaves is gone from every other host's peers when its
lease goes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "PEERS",
    "RANGE",
    "SINCE",
    "SLICES",
    "SUBNETS",
    "InvalidPeer",
    "Peer",
    "SlicePlan",
    "app_pairs",
    "choose_slice",
    "interface_name",
    "network_subnet",
    "overlaps",
    "peer_set",
    "silent_peers",
    "tunnel_rules",
]

SLICES = "/site/network/slices/"  # <index> -> the host id that holds that slice, forever
PEERS = "/site/network/peers/"  # <host id> -> Peer JSON, under the host's lease
SUBNETS = "/site/network/subnets/"  # <host id> -> {"tenant/app": subnet}, under its lease
RANGE = "/site/network/range"  # the site's range and prefixes, as the first host wrote them
SINCE = "/site/network/since"  # unix time the site took its range (`enforcer.network.beacon`)

HANDSHAKE_SILENCE = 180.0  # WireGuard re-handshakes every 2 minutes on a live tunnel
FIRST_HANDSHAKE = 10.0  # a reachable peer answers the first handshake within this
KEEPALIVE = 25  # seconds: peers keep their tunnels up (and the handshakes fresh)


class InvalidPeer(ValueError):
    """A peer record is malformed; str() names the host and the field."""


@dataclass(frozen=True)
class SlicePlan:
    """The site's range cut into host slices, and host slices into network subnets."""

    range: ipaddress.IPv4Network
    host_prefix: int = 22
    network_prefix: int = 26

    def __post_init__(self) -> None:
        if not self.range.prefixlen <= self.host_prefix <= self.network_prefix <= 29:
            raise ValueError(
                f"network: host-prefix /{self.host_prefix} must lie between the range's "
                f"/{self.range.prefixlen} and network-prefix /{self.network_prefix} (at most /29)"
            )

    @classmethod
    def parse(cls, text: str, host_prefix: int = 22, network_prefix: int = 26) -> SlicePlan:
        try:
            net = ipaddress.IPv4Network(text)
        except ValueError as exc:
            raise ValueError(f'network.range: "{text}" is not an IPv4 network ({exc})') from None
        return cls(net, host_prefix, network_prefix)

    @property
    def size(self) -> int:
        """How many host slices the range holds."""
        return 1 << (self.host_prefix - self.range.prefixlen)

    def slice(self, index: int) -> ipaddress.IPv4Network:
        if not 0 <= index < self.size:
            raise ValueError(f"slice {index} is outside {self.range} (0..{self.size - 1})")
        step = 1 << (32 - self.host_prefix)
        return ipaddress.IPv4Network((int(self.range.network_address) + index * step,
                                      self.host_prefix))  # fmt: skip

    def to_json(self) -> bytes:
        body = {"range": str(self.range), "host-prefix": self.host_prefix,
                "network-prefix": self.network_prefix}  # fmt: skip
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SlicePlan:
        try:
            raw = json.loads(data)
            return cls.parse(str(raw["range"]), int(raw["host-prefix"]),
                             int(raw["network-prefix"]))  # fmt: skip
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{RANGE}: not a site network record ({exc})") from None


def choose_slice(plan: SlicePlan, taken: Mapping[int, str], host: str) -> int | None:
    """The slice this host holds already, else the lowest free one; None when all are held."""
    for index, holder in sorted(taken.items()):
        if holder == host:
            return index
    for index in range(plan.size):
        if index not in taken:
            return index
    return None


def network_subnet(
    host_slice: ipaddress.IPv4Network, prefix: int, used: Iterable[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network | None:
    """The lowest subnet of `host_slice` with `prefix` that overlaps none of `used`."""
    busy = list(used)
    for sub in host_slice.subnets(new_prefix=prefix):
        if not any(sub.overlaps(u) for u in busy):
            return sub
    return None


def overlaps(
    site_range: ipaddress.IPv4Network, others: Mapping[str, ipaddress.IPv4Network]
) -> list[str]:
    """One message per network of `others` (name -> network) that overlaps the site's range."""
    return [
        f"the site's container range {site_range} overlaps {name} ({net})"
        for name, net in sorted(others.items())
        if net.overlaps(site_range)
    ]


def _check_key(host: str, key: object) -> str:
    try:
        if not isinstance(key, str) or len(base64.b64decode(key, validate=True)) != 32:
            raise ValueError
    except (ValueError, binascii.Error):
        raise InvalidPeer(f"peer {host}: public-key is not a WireGuard key: {key!r}") from None
    return key


@dataclass(frozen=True)
class Peer:
    """What a host publishes for the others: how to reach its slice through WireGuard."""

    host: str
    public_key: str
    endpoint: str  # address:port on the site LAN
    slice: ipaddress.IPv4Network

    def to_json(self) -> bytes:
        body = {"host": self.host, "public-key": self.public_key, "endpoint": self.endpoint,
                "slice": str(self.slice)}  # fmt: skip
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Peer:
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            host = str(raw["host"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise InvalidPeer(f"a peer record is not readable: {exc}") from None
        key = _check_key(host, raw.get("public-key"))
        endpoint = raw.get("endpoint")
        try:
            address, _, port = str(endpoint).rpartition(":")
            ipaddress.ip_address(address)
            if not 0 < int(port) < 65536:
                raise ValueError
        except ValueError:
            raise InvalidPeer(f"peer {host}: endpoint is not address:port: {endpoint!r}") from None
        text = raw.get("slice")
        try:
            net = ipaddress.IPv4Network(str(text))
        except ValueError:
            raise InvalidPeer(f"peer {host}: slice is not a network: {text!r}") from None
        return cls(host, key, str(endpoint), net)


def peer_set(
    me: str,
    published: Mapping[str, Peer],
    live: Iterable[str],
    plan: SlicePlan,
) -> tuple[tuple[Peer, ...], list[str]]:
    """The peers this host should have (by host id), and why any published one is left out:
    only live hosts other than this one, whose slice lies in the site's range and overlaps no
    other peer's (nor this host's)."""
    alive = set(live)
    out: list[Peer] = []
    why: list[str] = []
    mine = published.get(me)
    for host in sorted(published):
        peer = published[host]
        if host == me or host not in alive:
            continue
        if not peer.slice.subnet_of(plan.range):
            why.append(f"peer {host}: its slice {peer.slice} is outside the site's {plan.range}")
        elif mine is not None and peer.slice.overlaps(mine.slice):
            why.append(f"peer {host}: its slice {peer.slice} overlaps this host's {mine.slice}")
        elif any(peer.slice.overlaps(p.slice) for p in out):
            why.append(f"peer {host}: its slice {peer.slice} overlaps another peer's")
        else:
            out.append(peer)
    return tuple(out), why


def silent_peers(
    peers: Iterable[Peer], handshakes: Mapping[str, float], now: float, since: float
) -> list[str]:
    """Hosts whose tunnel is not up: no handshake (by public key: the unix time of the latest
    one, 0 for none) FIRST_HANDSHAKE after this host's interface came up (`since`), or none
    for HANDSHAKE_SILENCE (peers keep their tunnels alive, so a live one handshakes every 2
    minutes)."""
    out = []
    for p in peers:
        last = handshakes.get(p.public_key, 0.0)
        if (last == 0.0 and now - since > FIRST_HANDSHAKE) or (
            last and now - last > HANDSHAKE_SILENCE
        ):
            out.append(p.host)
    return out


def interface_name(host: str) -> str:
    """The WireGuard interface's name, unique per host id (several run on one test machine,
    and wireguard-go's control socket is named after the interface)."""
    return "ewg-" + hashlib.sha1(host.encode()).hexdigest()[:8]


def app_pairs(
    local: Mapping[str, str], remote: Mapping[str, Mapping[str, str]]
) -> list[tuple[str, str]]:
    """(remote subnet, local subnet) of every application network on this host and the same
    application's networks on the other hosts (keys: "tenant/app"; `remote`: per host)."""
    out = []
    for host in sorted(remote):
        for key, far in sorted(remote[host].items()):
            if key in local:
                out.append((far, local[key]))
    return out


def tunnel_rules(
    chain: str,
    interface: str,
    own: ipaddress.IPv4Network,
    site: ipaddress.IPv4Network,
    pairs: Iterable[tuple[str, str]],
) -> str:
    """iptables-restore input: between the tunnel and this host's slice only traffic between
    networks of one application passes (the outbound policy does not stop it: it stays in the
    site); everything else from the tunnel into the slice is dropped. DNS to the gateways
    passes (`chain`-IN), and nothing from the slice into the site's range is masqueraded."""
    lines = ["*filter", f":{chain} - [0:0]", f":{chain}-IN - [0:0]"]
    for far, near in pairs:
        lines.append(f"-A {chain} -i {interface} -s {far} -d {near} -j ACCEPT")
        lines.append(f"-A {chain} -o {interface} -s {near} -d {far} -j ACCEPT")
    lines.append(f"-A {chain} -i {interface} -d {own} -j DROP")
    lines.append(f"-A {chain}-IN -d {own} -p udp --dport 53 -j ACCEPT")
    lines += ["COMMIT", "*nat", f":{chain} - [0:0]", f"-A {chain} -s {own} -d {site} -j ACCEPT"]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
