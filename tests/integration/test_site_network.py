"""The site network across hosts with networks of their own: each host is a network namespace
of the test's (`tests.support.netns`), joined to the others by a bridge standing for the site
LAN, with its own dockerd and enforcer inside; the site's etcd listens on the machine's address
on that LAN. A client on one host reaches a server on another by address and by its service
name through WireGuard (wireguard-go: this kernel has no WireGuard), the LAN carries nothing of
it in clear, and after the server's host dies the name reaches it on the host it moved to. A
one-host site runs no WireGuard; a host without wireguard-go says which package is missing; a
range that overlaps the LAN, or an older site's on the same LAN, is refused naming both.
"""

from __future__ import annotations

import ipaddress
import shutil
import time
from pathlib import Path

from tests.support.apps import app, sleeper, web
from tests.support.netns import (
    IMAGE,
    PAYLOAD,
    SITE_NETWORK,
    TTL,
    address_of,
    capture,
    control_app,
    fetch,
    network_site,
    wait_running,
)
from tests.support.processes import wait_for

ON_H1 = {"match-host-labels": "role = h1"}


def test_a_client_reaches_a_server_on_another_host_by_name_only_through_wireguard(
    tmp_path: Path,
) -> None:
    # host-4 runs nothing: its WireGuard port is blocked, and the others' status names it
    with network_site(4, blocked=frozenset({4})) as (lan, hosts):
        a = hosts[0]
        doc = app(
            "shop",
            web("server", IMAGE, placement={"match-host-labels": "role != h1 and role != h4"}),
            sleeper("client", IMAGE, placement=ON_H1),
        )
        a.enforcer.apply(doc)
        client = wait_running(a, "shop.client.0")
        wait_for(lambda: any(h.container("shop.server.0") for h in hosts[1:3]), 30, "the server")
        b = next(h for h in hosts[1:3] if h.container("shop.server.0"))
        c = next(h for h in hosts[1:3] if h is not b)
        target = address_of(b.container("shop.server.0"))
        wait_for(lambda: all(h.site()["network"]["slice"] for h in hosts), 15, "every slice")
        slices = {h.enforcer.host_id: h.site()["network"]["slice"] for h in hosts}
        assert len(set(slices.values())) == 4, slices
        assert ipaddress.ip_address(target) in ipaddress.ip_network(slices[b.enforcer.host_id])

        dump = tmp_path / "lan.txt"
        with capture(lan, dump):
            assert fetch(client, f"http://{target}:8080/", 20) == (0, PAYLOAD + "\n")
            assert fetch(client, "http://server:8080/", 10) == (0, PAYLOAD + "\n")
        seen = dump.read_text(errors="replace")
        assert f"{b.lan.address}.51820: UDP" in seen, seen[-2000:]
        assert PAYLOAD not in seen, "the application's payload crossed the LAN in clear"
        assert target not in seen, "the server's address crossed the LAN in clear"
        # another application on the client's host, and another tenant's (from control, as
        # the leader hands it to the site), reach neither the name nor the address
        a.enforcer.apply(app("other", sleeper("client", IMAGE, placement=ON_H1)))
        control_app(a, app("ledger", sleeper("probe", IMAGE, placement=ON_H1)), "globex")
        intruders = [wait_running(a, "other.client.0"), wait_running(a, "ledger.probe.0")]
        assert "ew.globex.ledger" in intruders[1].attrs["NetworkSettings"]["Networks"]
        probe = ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} 8080"]
        code, out = client.exec_run(probe)
        assert PAYLOAD in out.decode(), out  # the probe works: the same app's client gets through
        for intruder in intruders:
            assert fetch(intruder, "http://server:8080/", 0)[1].startswith("wget: bad address")
            code, out = intruder.exec_run(probe)
            assert PAYLOAD not in out.decode() and code != 0, (intruder.name, code, out)

        network = a.site()["network"]
        assert network["wireguard"] == "wireguard-go"
        assert sorted(p["host"] for p in network["peers"]) == ["host-2", "host-3", "host-4"]
        blocked = hosts[3].lan.address
        wait_for(
            lambda: (
                a.health()["checks"]["site-network"]
                == f"peer host-4 is unreachable: no WireGuard handshake with {blocked}:51820"
            ),
            15,
            "the blocked peer named",
        )
        status = a.enforcer.cli("status").stdout
        assert "site-network:" in status and "peer host-4 is unreachable" in status, status

        # the server's host dies: the server runs on the third, the name follows it, and the
        # dead host is gone from the others' peers and routes
        b.kill()
        died = time.monotonic()
        wait_for(lambda: c.container("shop.server.0") is not None, TTL + 15, "the moved server")
        assert fetch(client, "http://server:8080/", 15) == (0, PAYLOAD + "\n")
        took = time.monotonic() - died
        moved = address_of(c.container("shop.server.0"))
        assert ipaddress.ip_address(moved) in ipaddress.ip_network(slices[c.enforcer.host_id])
        print(f"reached by name on its new host {took:.1f}s after its host died")
        wait_for(
            lambda: (
                [p["host"] for p in a.site()["network"]["peers"]]
                == sorted([c.enforcer.host_id, "host-4"])
            ),
            10,
            "the dead host gone from the peers",
        )
        assert took < TTL + 10
        interface = network["interface"]
        routes = a.lan.run("ip", "-4", "route", "show", "dev", interface).stdout.split("\n")
        routed = sorted(r.split()[0] for r in routes if r.strip())
        assert routed == sorted(p["slice"] for p in a.site()["network"]["peers"]), routes
        assert slices[b.enforcer.host_id] not in routed, routes

        # host-4 leaves the site: gone from the others' peers and routes, no tunnel of its own
        left = hosts[3].enforcer.cli("site", "leave", timeout=30)
        assert left.returncode == 0 and "host host-4 left site" in left.stdout, left
        wait_for(
            lambda: [p["host"] for p in a.site()["network"]["peers"]] == [c.enforcer.host_id],
            10,
            "the host that left gone from the peers",
        )
        routes = a.lan.run("ip", "-4", "route", "show", "dev", interface).stdout.split("\n")
        assert [r.split()[0] for r in routes if r.strip()] == [slices[c.enforcer.host_id]], routes
        assert "ewg-" not in hosts[3].lan.run("ip", "-o", "link").stdout
        assert hosts[3].wireguard_go() == []
        assert fetch(client, "http://server:8080/", 5) == (0, PAYLOAD + "\n")


def test_a_one_host_site_runs_no_wireguard() -> None:
    with network_site(1, cluster=False) as (_, (host,)):
        host.enforcer.apply(app("solo", sleeper("main", IMAGE)))
        solo = wait_running(host, "solo.main.0")
        links = host.lan.run("ip", "-o", "link").stdout
        assert "ewg-" not in links and "wireguard" not in links, links
        assert host.wireguard_go() == []
        assert "network" not in host.site()
        assert not address_of(solo).startswith("10.250."), "a one-host site took a site slice"


def test_without_wireguard_go_the_health_names_the_package_and_the_host_runs_alone(
    tmp_path: Path,
) -> None:
    # the enforcer's PATH: the tools it needs, and no wireguard-go
    tools = tmp_path / "bin"
    tools.mkdir()
    for program in ("ip", "iptables", "iptables-save", "iptables-restore", "ip6tables",
                    "ip6tables-save", "ip6tables-restore", "wg", "nsenter"):  # fmt: skip
        found = shutil.which(program)
        if found is not None:
            (tools / program).symlink_to(found)
    with network_site(1, enforcer_path=str(tools)) as (_, (host,)):
        host.enforcer.apply(app("solo", sleeper("main", IMAGE)))
        wait_running(host, "solo.main.0")
        check = host.health()["checks"]["site-network"]
        assert "no WireGuard in this kernel and no wireguard-go" in check, check
        assert "install the Debian package wireguard-go" in check, check
        assert host.wireguard_go() == []


def test_a_range_that_overlaps_the_lan_or_an_older_sites_on_it_is_refused_naming_both() -> None:
    # three sites, each its own store, on one LAN: site-1 (host-1) takes 10.250.0.0/16 first,
    # site-2 (host-2) the same later, site-3 (host-3) a range that holds the LAN's addresses
    holds_lan = 'site-network = true\nrange = "10.251.0.0/16"\n'  # the suite's LANs are in it
    networks = [SITE_NETWORK, SITE_NETWORK, holds_lan]
    with network_site(3, sites=3, network=networks) as (lan, (older, newer, routed)):
        for host in (newer, routed):
            host.enforcer.apply(app("solo", sleeper("main", IMAGE)))
        solos = [wait_running(host, "solo.main.0") for host in (newer, routed)]  # the refusals came
        refused = (
            "site site-2's container range 10.250.0.0/16 overlaps site site-1's 10.250.0.0/16 "
            f"on this LAN (announced by its host host-1 at {older.lan.address}), which had it "
            "first: set [network] range to a free range"
        )
        assert newer.health()["checks"]["site-network"] == refused
        assert refused in newer.enforcer.cli("status").stdout
        assert routed.health()["checks"]["site-network"] == (
            f"the site's container range 10.251.0.0/16 overlaps the network on eth0 ({lan.net}): "
            "set [network] range to a free range"
        )
        for host, solo, net in ((newer, solos[0], "10.250."), (routed, solos[1], "10.251.")):
            assert not address_of(solo).startswith(net), f"{host.enforcer.host_id} used {net}"
            assert "ewg-" not in host.lan.run("ip", "-o", "link").stdout
            assert host.wireguard_go() == []
        # the older site goes on with its range, untroubled
        assert older.health()["checks"]["site-network"] == "ok"
        assert ipaddress.IPv4Network(older.site()["network"]["slice"]).subnet_of(
            ipaddress.IPv4Network("10.250.0.0/16")
        )
