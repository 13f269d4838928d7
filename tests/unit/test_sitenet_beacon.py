"""Sites on one LAN: the beacon each site host announces, and which site an overlap refuses."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket

import pytest

from enforcer.network.announce import LanBeacon
from enforcer.network.beacon import FORGET, Beacon, Heard, InvalidBeacon, broadcast_of, clashes


def beacon(site: str, since: float, net: str = "10.250.0.0/16", host: str = "h1") -> Beacon:
    return Beacon(site, host, ipaddress.IPv4Network(net), since)


def heard(b: Beacon, at: float = 100.0, sender: str = "192.168.1.7") -> Heard:
    return Heard(b, sender, at)


def test_a_beacon_reads_back_as_it_was_sent() -> None:
    b = beacon("store-1", 1700000000.5)
    assert Beacon.from_bytes(b.to_bytes()) == b


KIND = "edgeward-site-network/1"
GOOD = {"kind": KIND, "site": "s", "host": "h", "range": "10.0.0.0/8", "since": 1}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff", "no beacon"),
        (b"[]", f"not a {KIND} beacon"),
        (json.dumps({**GOOD, "kind": "other"}).encode(), f"not a {KIND} beacon"),
        (json.dumps({**GOOD, "site": ""}).encode(), "site and host must be names"),
        (json.dumps({**GOOD, "range": "10.0.0.1/8"}).encode(), "host bits set"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "since"}).encode(), "since"),
    ],
)
def test_a_datagram_that_is_no_beacon_is_refused_saying_why(data: bytes, why: str) -> None:
    with pytest.raises(InvalidBeacon, match="no beacon") as caught:
        Beacon.from_bytes(data)
    assert why in str(caught.value)


def test_the_newer_of_two_overlapping_sites_is_refused_naming_both() -> None:
    older = beacon("store-1", 10.0, "10.250.0.0/16")
    newer = beacon("store-2", 20.0, "10.250.4.0/22")
    assert clashes(newer, [heard(older)], 101.0) == [
        "site store-2's container range 10.250.4.0/22 overlaps site store-1's 10.250.0.0/16 on "
        "this LAN (announced by its host h1 at 192.168.1.7), which had it first: set [network] "
        "range to a free range"
    ]
    assert clashes(older, [heard(newer)], 101.0) == []


def test_sites_whose_ranges_do_not_overlap_both_go_on() -> None:
    a, b = beacon("store-1", 10.0), beacon("store-2", 20.0, "10.251.0.0/16")
    assert clashes(b, [heard(a)], 101.0) == [] and clashes(a, [heard(b)], 101.0) == []


def test_the_hosts_of_one_site_do_not_clash_and_a_site_is_named_once() -> None:
    me = beacon("store-2", 20.0, host="h1")
    other = [heard(beacon("store-1", 10.0, host=h)) for h in ("h1", "h2", "h3")]
    mine = [heard(beacon("store-2", 20.0, host="h2"))]
    found = clashes(me, other + mine, 101.0)
    assert len(found) == 1 and "announced by its host h1" in found[0]


def test_two_sites_of_one_name_are_two_sites() -> None:
    assert clashes(beacon("shop", 20.0), [heard(beacon("shop", 10.0))], 101.0)
    assert not clashes(beacon("shop", 10.0), [heard(beacon("shop", 20.0))], 101.0)


def test_on_a_tie_the_lower_site_name_keeps_its_range() -> None:
    a, b = beacon("store-a", 10.0), beacon("store-b", 10.0)
    assert clashes(b, [heard(a)], 101.0) and not clashes(a, [heard(b)], 101.0)


def test_a_site_not_heard_for_a_while_is_forgotten() -> None:
    older = heard(beacon("store-1", 10.0), at=100.0)
    assert clashes(beacon("store-2", 20.0), [older], 100.0 + FORGET)
    assert clashes(beacon("store-2", 20.0), [older], 100.1 + FORGET) == []


ADDRESSES = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 192.168.1.7/24 brd 192.168.1.255 scope global eth0\\       valid_lft forever
3: wg0    inet 10.250.3.254/32 scope global wg0\\       valid_lft forever preferred_lft forever
"""


def test_the_beacon_goes_to_the_broadcast_of_the_advertise_addresss_network() -> None:
    assert broadcast_of(ADDRESSES, "192.168.1.7") == "192.168.1.255"
    assert broadcast_of(ADDRESSES, "10.250.3.254") == "255.255.255.255"  # a /32: no network
    assert broadcast_of(ADDRESSES, "172.16.0.1") == "255.255.255.255"  # held by no interface


def test_a_host_keeps_the_beacons_it_hears_and_ignores_other_datagrams(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> dict[tuple[str, str], Heard]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        lan = LanBeacon(port)
        await lan.open()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                for data in (b"hello", b"hello", beacon("store-1", 10.0, host="h7").to_bytes()):
                    other.sendto(data, ("127.0.0.1", port))
                await asyncio.sleep(0.2)
            return dict(lan.heard)
        finally:
            lan.close()

    heard_here = asyncio.run(scenario())
    assert list(heard_here) == [("store-1", "h7")]
    assert heard_here[("store-1", "h7")].sender == "127.0.0.1"
    bad = [r for r in caplog.records if "is no beacon" in r.getMessage()]
    assert len(bad) == 1, "a sender of something else is logged once"
