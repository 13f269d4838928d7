"""The site network's pure decisions: slices, subnets, overlaps, peers, silent tunnels."""

from __future__ import annotations

import base64
import ipaddress
import re

import pytest

from enforcer.network.sitenet import (
    InvalidPeer,
    Peer,
    SlicePlan,
    app_pairs,
    choose_slice,
    interface_name,
    network_subnet,
    overlaps,
    peer_set,
    silent_peers,
    tunnel_rules,
)

N = ipaddress.IPv4Network
PLAN = SlicePlan.parse("10.213.0.0/16")


def key(n: int) -> str:
    return base64.b64encode(bytes([n]) * 32).decode()


def peer(host: str, n: int, net: str) -> Peer:
    return Peer(host, key(n), f"10.251.0.{n}:51820", N(net))


def test_the_default_range_holds_sixty_four_host_slices_of_a_slash_22() -> None:
    assert PLAN.size == 64
    assert PLAN.slice(0) == N("10.213.0.0/22")
    assert PLAN.slice(1) == N("10.213.4.0/22")
    assert PLAN.slice(63) == N("10.213.252.0/22")
    with pytest.raises(ValueError, match=re.escape("outside 10.213.0.0/16")):
        PLAN.slice(64)


def test_a_host_keeps_its_slice_and_a_new_host_takes_the_lowest_free_one() -> None:
    taken = {0: "host-1", 1: "host-2", 3: "host-4"}
    assert choose_slice(PLAN, taken, "host-2") == 1
    assert choose_slice(PLAN, taken, "host-9") == 2
    full = {i: f"h{i}" for i in range(PLAN.size)}
    assert choose_slice(PLAN, full, "host-new") is None


def test_prefixes_out_of_order_are_refused_naming_both() -> None:
    with pytest.raises(ValueError, match="host-prefix /27 must lie between the range's /16"):
        SlicePlan.parse("10.213.0.0/16", 27, 26)
    with pytest.raises(ValueError, match=re.escape('network.range: "10.213.0.0/33"')):
        SlicePlan.parse("10.213.0.0/33")


def test_the_plan_goes_through_the_store_unchanged() -> None:
    plan = SlicePlan.parse("10.99.0.0/20", 24, 27)
    assert SlicePlan.from_json(plan.to_json()) == plan
    with pytest.raises(ValueError, match="not a site network record"):
        SlicePlan.from_json(b'{"range": "x"}')


def test_an_application_network_takes_the_lowest_free_subnet_of_the_slice() -> None:
    s = N("10.213.4.0/22")
    assert network_subnet(s, 26, []) == N("10.213.4.0/26")
    assert network_subnet(s, 26, [N("10.213.4.0/26"), N("10.213.4.128/26")]) == N("10.213.4.64/26")
    assert network_subnet(s, 26, [N("10.213.4.0/22")]) is None


def test_overlapping_networks_are_each_named() -> None:
    found = overlaps(N("10.213.0.0/16"), {"the LAN on eth0": N("10.213.7.0/24"),
                                          "docker0": N("172.17.0.0/16")})  # fmt: skip
    assert found == ["the site's container range 10.213.0.0/16 overlaps the LAN on eth0 "
                     "(10.213.7.0/24)"]  # fmt: skip


def test_peers_are_the_other_live_hosts_and_a_dead_one_is_left_out() -> None:
    published = {
        "host-1": peer("host-1", 1, "10.213.0.0/22"),
        "host-2": peer("host-2", 2, "10.213.4.0/22"),
        "host-3": peer("host-3", 3, "10.213.8.0/22"),
    }
    peers, why = peer_set("host-1", published, {"host-1", "host-2"}, PLAN)
    assert [p.host for p in peers] == ["host-2"]
    assert why == []


def test_a_peer_whose_slice_collides_or_lies_outside_the_range_is_refused_with_a_reason() -> None:
    published = {
        "host-1": peer("host-1", 1, "10.213.0.0/22"),
        "host-2": peer("host-2", 2, "10.213.0.0/24"),
        "host-3": peer("host-3", 3, "10.7.0.0/22"),
        "host-4": peer("host-4", 4, "10.213.8.0/22"),
        "host-5": peer("host-5", 5, "10.213.8.0/23"),
    }
    live = set(published)
    peers, why = peer_set("host-1", published, live, PLAN)
    assert [p.host for p in peers] == ["host-4"]
    assert why == [
        "peer host-2: its slice 10.213.0.0/24 overlaps this host's 10.213.0.0/22",
        "peer host-3: its slice 10.7.0.0/22 is outside the site's 10.213.0.0/16",
        "peer host-5: its slice 10.213.8.0/23 overlaps another peer's",
    ]


def test_a_peer_record_goes_through_the_store_and_bad_fields_are_named() -> None:
    p = peer("host-2", 2, "10.213.4.0/22")
    assert Peer.from_json(p.to_json()) == p
    bad = b'{"host": "host-2", "public-key": "abc", "endpoint": "10.0.0.1:1", "slice": "1.0.0.0/8"}'
    with pytest.raises(InvalidPeer, match="peer host-2: public-key is not a WireGuard key"):
        Peer.from_json(bad)
    bad = p.to_json().replace(b"10.251.0.2:51820", b"10.251.0.2")
    with pytest.raises(InvalidPeer, match="peer host-2: endpoint is not address:port"):
        Peer.from_json(bad)
    bad = p.to_json().replace(b"10.213.4.0/22", b"ten")
    with pytest.raises(InvalidPeer, match="peer host-2: slice is not a network: 'ten'"):
        Peer.from_json(bad)
    with pytest.raises(InvalidPeer, match="not readable"):
        Peer.from_json(b"[]")


def test_a_peer_that_never_answers_or_went_quiet_is_named_silent() -> None:
    a, b, c = (
        peer("a", 1, "10.213.0.0/22"),
        peer("b", 2, "10.213.4.0/22"),
        peer("c", 3, "10.0.0.0/8"),
    )
    shakes = {a.public_key: 1000.0, c.public_key: 850.0}
    assert silent_peers([a, b, c], shakes, now=1005.0, since=1000.0) == []  # too early to say
    assert silent_peers([a, b, c], shakes, now=1040.0, since=1000.0) == ["b", "c"]
    assert silent_peers([a, b], shakes, now=1100.0, since=0.0) == ["b"]


def test_interface_names_are_unique_per_host_and_fit_the_kernels_limit() -> None:
    names = {interface_name(f"host-{n}") for n in range(100)}
    assert len(names) == 100
    assert all(len(n) <= 15 for n in names)


def test_only_networks_of_one_application_are_paired_across_hosts() -> None:
    local = {"t1/shop": "10.213.0.0/26", "t1/other": "10.213.0.64/26"}
    remote = {
        "host-2": {"t1/shop": "10.213.4.0/26", "t2/shop": "10.213.4.64/26"},
        "host-3": {"t1/other": "10.213.8.0/26"},
    }
    assert app_pairs(local, remote) == [
        ("10.213.4.0/26", "10.213.0.0/26"),
        ("10.213.8.0/26", "10.213.0.64/26"),
    ]


def test_the_tunnel_passes_one_applications_traffic_and_drops_the_rest_into_the_slice() -> None:
    text = tunnel_rules(
        "EW-WG-x", "ewg-1", N("10.213.0.0/22"), N("10.213.0.0/16"),
        [("10.213.4.0/26", "10.213.0.0/26")],
    )  # fmt: skip
    assert text.splitlines() == [
        "*filter",
        ":EW-WG-x - [0:0]",
        ":EW-WG-x-IN - [0:0]",
        "-A EW-WG-x -i ewg-1 -s 10.213.4.0/26 -d 10.213.0.0/26 -j ACCEPT",
        "-A EW-WG-x -o ewg-1 -s 10.213.0.0/26 -d 10.213.4.0/26 -j ACCEPT",
        "-A EW-WG-x -i ewg-1 -d 10.213.0.0/22 -j DROP",
        "-A EW-WG-x-IN -d 10.213.0.0/22 -p udp --dport 53 -j ACCEPT",
        "COMMIT",
        "*nat",
        ":EW-WG-x - [0:0]",
        "-A EW-WG-x -s 10.213.0.0/22 -d 10.213.0.0/16 -j ACCEPT",
        "COMMIT",
    ]
