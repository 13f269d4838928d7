"""Sites on one LAN (pure): what each site host announces, and which overlap refuses a site.

Two multi-host sites on one LAN (a store with two lines, a site cloned from another one's
configuration) must not share container addresses: a host of one would route the other's
addresses into its own tunnel. The site store of each site knows only its own site, so every
host with the site network announces on its LAN (a UDP broadcast on the advertise address's
network, to the WireGuard port + 1, every round of the mesh: `enforcer.network.announce`)
its site, its host id, the site's range and since when the site has had that range. A host
that hears another site whose range overlaps its own decides with `clashes`: the site that
took its range later (the newer; the lower site name on a tie) is refused, with both named;
the older one goes on. A site is its name and its `since` (two sites may share a name; the
hosts of one share both). What a host heard is forgotten `FORGET` seconds after the last beacon.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["FORGET", "LISTEN", "Beacon", "Heard", "InvalidBeacon", "broadcast_of", "clashes"]

FORGET = 5.0  # seconds: a site not heard for this long is gone from the LAN
LISTEN = 2.0  # seconds a host listens before it takes a slice (each host announces every 1 s)
MAGIC = "edgeward-site-network/1"


class InvalidBeacon(ValueError):
    """A datagram on the beacon port is not a site's beacon; str() says why."""


@dataclass(frozen=True)
class Beacon:
    site: str
    host: str
    range: ipaddress.IPv4Network
    since: float  # unix time the site took its range (its site store's record)

    def to_bytes(self) -> bytes:
        body = {"kind": MAGIC, "site": self.site, "host": self.host,
                "range": str(self.range), "since": self.since}  # fmt: skip
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Beacon:
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or raw.get("kind") != MAGIC:
                raise ValueError(f"not a {MAGIC} beacon")
            site, host = raw["site"], raw["host"]
            if not isinstance(site, str) or not site or not isinstance(host, str) or not host:
                raise ValueError("site and host must be names")
            return cls(site, host, ipaddress.IPv4Network(raw["range"]), float(raw["since"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise InvalidBeacon(f"a datagram on the beacon port is no beacon: {exc}") from None


@dataclass(frozen=True)
class Heard:
    beacon: Beacon
    sender: str  # the address it came from
    at: float  # when (monotonic seconds)


def _older(a: Beacon, b: Beacon) -> bool:
    return (a.since, a.site) < (b.since, b.site)


def clashes(me: Beacon, heard: Iterable[Heard], now: float) -> list[str]:
    """Why this host's site may not use its range: one line per other site heard within
    FORGET whose range overlaps it and that is the older of the two (sorted, one per site)."""
    found: dict[tuple[str, float], str] = {}
    for h in sorted(heard, key=lambda h: (h.beacon.site, h.beacon.host)):
        b = h.beacon
        site = (b.site, b.since)  # a site: its name and its store's record (names may repeat)
        if site == (me.site, me.since) or now - h.at > FORGET or site in found:
            continue
        if b.range.overlaps(me.range) and _older(b, me):
            found[site] = (
                f"site {me.site}'s container range {me.range} overlaps site {b.site}'s "
                f"{b.range} on this LAN (announced by its host {b.host} at {h.sender}), which "
                "had it first: set [network] range to a free range"
            )
    return list(found.values())


def broadcast_of(addresses: str, address: str) -> str:
    """The broadcast address of the network that holds `address`, from `ip -4 -o addr show`;
    the limited broadcast 255.255.255.255 where no interface holds it."""
    for line in addresses.splitlines():
        parts = line.split()
        if "inet" not in parts:
            continue
        text = parts[parts.index("inet") + 1]
        try:
            iface = ipaddress.IPv4Interface(text)
        except ValueError:
            continue
        if str(iface.ip) == address and iface.network.prefixlen < 31:
            return str(iface.network.broadcast_address)
    return "255.255.255.255"
