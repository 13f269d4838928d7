"""A three-host site with a three-member etcd (plain HTTP on 127.0.0.11-13) and real control:
the control link runs on the elected leader only, with the site's identity from the store;
when the leader dies, a new one syncs with no new enrollment. One site serves every test of
this module, in order; each leaves all three hosts running.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker
import pytest

from enforcer.cli.client import Client
from tests.support.apps import app, container, service, sleeper
from tests.support.control import ControlProcess
from tests.support.devices import LoopDevice, loop_device
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine
from tests.support.etcd import ADDRESSES, EtcdMember, member_config
from tests.support.http import request
from tests.support.images import import_image, push
from tests.support.processes import wait_for
from tests.support.registry import Registry
from tests.support.site import Sampler, SiteHost, placement, wait_placed

TTL = 3.0


@dataclass
class Site:
    members: list[EtcdMember]
    hosts: list[SiteHost]
    cameras: list[LoopDevice]  # h2's, h3's

    def leader(self, timeout: float = 15) -> SiteHost:
        """The host every live host names as the leader."""
        found: dict[str, Any] = {}

        def agreed() -> bool:
            live = [h for h in self.hosts if h.alive]
            found["leaders"] = {Client(h.enforcer.socket, timeout=5).site()["leader"] for h in live}
            return len(found["leaders"]) == 1 and None not in found["leaders"]

        wait_for(agreed, timeout, "an agreed leader")
        (leader,) = found["leaders"]
        return next(h for h in self.hosts if h.id == leader)


def iptables(*args: str) -> None:
    subprocess.run(["iptables", *args], check=True, capture_output=True)


def route_of(n: int) -> str:
    """The address host n reaches the store through: 127.0.0.2n, forwarded to the members."""
    return f"127.0.0.2{n}"


def routed(members: list[EtcdMember], n: int, routes: list[list[str]]) -> list[str]:
    """Host n's endpoints: each member through host n's own address (a DNAT rule each), so
    that one rule on that address alone cuts host n off from the store (`cut_off`)."""
    urls = []
    for m in members:
        port = str(m.config.client_port)
        rule = ["OUTPUT", "-t", "nat", "-d", route_of(n), "-p", "tcp", "--dport", port,
                "-j", "DNAT", "--to-destination", f"{m.config.advertise}:{port}"]  # fmt: skip
        iptables("-A", *rule)
        routes.append(rule)
        urls.append(f"http://{route_of(n)}:{port}")
    return urls


@contextlib.contextmanager
def cut_off(n: int) -> Iterator[None]:
    """Host n cannot reach the store, nor the store it: every packet of its connections to
    the store is dropped (the rule names only host n's own address)."""
    rule = ["OUTPUT", "-m", "conntrack", "--ctorigdst", route_of(n), "-j", "DROP"]
    iptables("-I", *rule)
    try:
        yield
    finally:
        iptables("-D", *rule)


def camera_rule(node: str) -> str:
    return f'[[devices.rule]]\nlabel = "camera"\nmatch = {{ SUBSYSTEM = "block", DEVNAME = "{node}" }}\n'


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with contextlib.ExitStack() as stack:
        cameras = [stack.enter_context(loop_device()), stack.enter_context(loop_device())]
        yield from running_site(cameras)


def running_site(cameras: list[LoopDevice]) -> Iterator[Site]:
    """Three hosts; h2 and h3 each have a camera (a loop device of its own), h1 has none."""
    root = Path(tempfile.mkdtemp(prefix="fo-", dir="/tmp"))
    configs = [member_config(root, None, f"m{i + 1}", a) for i, a in enumerate(ADDRESSES)]
    cluster = {c.name: c.peer_url for c in configs}
    members = [EtcdMember(replace(c, initial_cluster=cluster)) for c in configs]
    hosts: list[SiteHost] = []
    routes: list[list[str]] = []
    try:
        for m in members:
            m.spawn()
        for m in members:
            m.wait_ready()
        for n, address in enumerate(ADDRESSES, start=1):
            engine = DockerEngine(root / f"d{n}")
            engine.start()
            endpoints = ", ".join(f'"{url}"' for url in routed(members, n, routes))
            extra = (
                f'[cluster]\nadvertise = "{address}"\netcd-endpoints = [{endpoints}]\n'
                f'lease-ttl = "{TTL:g}s"\n' + (camera_rule(cameras[n - 2].node) if n > 1 else "")
            )
            proc = EnforcerProc(
                root / f"e{n}", engine.url, extra_config=extra, host_id=f"h{n}",
                host_labels={"node": f"h{n}"},
            )  # fmt: skip
            hosts.append(SiteHost(engine, proc, address))
            proc.start()
        yield Site(members, hosts, cameras)
    finally:
        for h in hosts:
            h.enforcer.stop()
            with contextlib.suppress(Exception):
                h.kill()  # its containers at once: a sleep as PID 1 would hold dockerd's stop
            h.enforcer.remove_firewall()
            h.enforcer.unmount_secrets()
            h.engine.stop()
        for m in members:
            m.stop()
        for rule in routes:
            iptables("-D", *rule)
        for h in hosts:
            print(f"--- {h.id} ---\n{h.enforcer.log_tail(3000)}")
        shutil.rmtree(root, ignore_errors=True)


def link_of(host: SiteHost) -> dict[str, Any]:
    control: dict[str, Any] = Client(host.enforcer.socket, timeout=5).site()["control"]
    return control


def enrolled_at(host: SiteHost) -> float:
    return float(
        json.loads((host.enforcer.state_dir / "site" / "site.json").read_text())["enrolled"]
    )


def reported_hosts(control: ControlProcess, site: str) -> dict[str, str]:
    """instance -> host, as the site last reported its status to control."""
    status = control.client().get(f"/v1/sites/{site}")["status"] or {}
    return {i["id"]: i["host"] for i in status.get("instances", [])}


def test_the_leader_syncs_for_the_site_and_a_new_leader_takes_over_without_enrolling(
    site: Site, control: ControlProcess, test_image: str
) -> None:
    hosts = site.hosts
    leader = site.leader()
    other = next(h for h in hosts if h is not leader)
    result = other.enforcer.cli("enroll", control.bundle("store-9", {"customer": "acme"}))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"enrolled as site store-9 with control at {control.url}"

    talker = container("main", test_image, "sh", "-c",
                       "echo ${SYS_INSTANCE} on ${SYS_HOST}; echo oops >&2; exec sleep 100000")  # fmt: skip
    control.client().put(
        "/v1/applications/shop/versions/1", app("shop", service("s", talker, replicas=3))
    )
    control.deploy(
        {"name": "shop-acme", "application": "shop", "version": "latest",
         "placement": {"match-site-labels": "customer = acme"}}
    )  # fmt: skip
    wanted = {"shop.s.0", "shop.s.1", "shop.s.2"}
    placed = wait_placed(hosts, wanted, timeout=40)
    assert set(placed.values()) == {h.id for h in hosts}, placed
    # every host's instances reach control, through the leader
    wait_for(lambda: reported_hosts(control, "store-9") == placed, 15, "the site's status")
    # and their logs: the leader relays control's request to the host that runs the instance
    for instance, host in sorted(placed.items()):
        shown = control.cli("logs", "store-9", instance, "--tail", "5")
        assert shown.returncode == 0, shown.stderr
        assert (shown.stdout, shown.stderr) == (f"{instance} on {host}\n", "oops\n")
    links = {h.id: link_of(h) for h in hosts}
    assert links[leader.id]["state"] in ("connected", "connecting"), links
    for h in hosts:
        if h is not leader:
            assert links[h.id]["state"] == "standby", links
            assert links[h.id]["site"] == "store-9" and links[h.id]["leader"] == leader.id
    first = enrolled_at(other)
    assert {enrolled_at(h) for h in hosts} == {first}  # one identity, the site's
    a_vault_reaches_an_instance_on_a_host_that_does_not_lead(site, control, other, test_image)

    leader.kill()
    wait_for(lambda: site.leader() is not leader, TTL + 10, "a new leader")
    new = site.leader()
    control.client().put(
        "/v1/applications/extra/versions/1", app("extra", sleeper("x", test_image))
    )
    control.deploy(
        {"name": "extra-acme", "application": "extra", "version": "latest",
         "placement": {"match-site-labels": "customer = acme"}}
    )  # fmt: skip
    moved = wait_placed(hosts, {*wanted, "extra.x.0"}, timeout=30)
    assert leader.id not in moved.values(), moved
    wait_for(lambda: link_of(new)["state"] == "connected", 10, "the new leader's link")
    assert enrolled_at(new) == first  # not enrolled again
    wait_for(lambda: reported_hosts(control, "store-9") == moved, 15, "the new leader's report")
    sites = [s["name"] for s in control.client().get("/v1/sites")["sites"]]
    assert sites == ["store-9"]

    leader.enforcer.start()  # back for the next test
    leader.alive = True
    wait_for(lambda: link_of(leader)["state"] == "standby", 15, "the returning host's link")


SECRET = "site-s3cr3t-NEVER-LEAK-5e1f"


def a_vault_reaches_an_instance_on_a_host_that_does_not_lead(
    site: Site, control: ControlProcess, follower: SiteHost, test_image: str
) -> None:
    """Control's vaults reach the leader only; every host takes them (still sealed) from the
    store. The follower's events reach control through the leader, once each."""
    for args in (
        ("vault", "create", "shelf", "--distribute", "customer = acme"),
        ("secret", "put", "shelf", "creds", f"api-key={SECRET}"),
    ):
        result = control.cli(*args)
        assert result.returncode == 0, result.stderr
    spec = app(
        "vision",
        service(
            "det",
            container(
                "main", test_image, "sleep", "100000", mounts=[{"volume": "c", "path": "/s"}]
            ),
            volumes=[{"name": "c", "secret": {"vault": "shelf", "secret": "creds"}}],
            placement={"match-host-labels": f"node = {follower.id}"},
        ),
    )
    control.client().put("/v1/applications/vision/versions/1", spec)
    deployment = {"name": "vision-acme", "application": "vision", "version": "latest",
                  "placement": {"match-site-labels": "customer = acme"}}  # fmt: skip
    control.deploy(deployment)
    assert wait_placed(site.hosts, {"vision.det.0"}, timeout=40) == {"vision.det.0": follower.id}
    engine = docker.DockerClient(base_url=follower.engine.url, timeout=10)
    try:
        code, out = engine.containers.get("ew.vision.det.0.main").exec_run(["cat", "/s/api-key"])
    finally:
        engine.close()
    assert (code, out.decode()) == (0, SECRET)
    # the store holds the vault sealed, never in clear
    body = json.dumps({"key": base64.b64encode(b"/site/vaults").decode()}).encode()
    answer = request("POST", site.members[0].config.client_url + "/v3/kv/range", body=body)
    (kv,) = json.loads(answer.body)["kvs"]
    assert b"shelf" in base64.b64decode(kv["value"])
    assert SECRET.encode() not in base64.b64decode(kv["value"])

    def started() -> list[dict[str, Any]]:
        events = control.client().get("/v1/sites/store-9/events", limit="1000")["events"]
        return [
            e for e in (r.get("event", r) for r in events)
            if e.get("kind") == "container.started" and e.get("instance") == "vision.det.0"
        ]  # fmt: skip

    wait_for(lambda: bool(started()), 15, "the follower's event at control")
    time.sleep(2)  # the leader forwards each once: no second copy comes
    (event,) = started()
    assert event["fields"]["host"] == follower.id
    # unsealed with control's key ("remote"): the follower fetches that key itself, also after
    # a restart of its enforcer (the key lives only in memory)
    control.client().put("/v1/vaults/shelf", {"distribute": "customer = acme", "unseal": "remote"})
    wait_for(lambda: stored_unseal(follower) == {"shelf": "remote"}, 20, "kept under control's key")
    follower.enforcer.stop()
    follower.enforcer.start()
    follower.enforcer.wait_ps(lambda p: p.get("vision.det.0", {}).get("state") == "running", 30)
    control.client().delete("/v1/deployments/vision-acme")
    wait_for(lambda: "vision.det.0" not in follower.running(), 30, "vision removed")


def stored_unseal(host: SiteHost) -> dict[str, str]:
    db = sqlite3.connect(f"file:{host.enforcer.state_dir / 'enforcer.db'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT name, unseal FROM vaults").fetchall())
    finally:
        db.close()


def containers(hosts: list[SiteHost]) -> dict[str, tuple[str, str, str]]:
    """instance -> (host, container id, StartedAt) for every running instance container."""
    out = {}
    for h in hosts:
        client = docker.DockerClient(base_url=h.engine.url, timeout=10)
        try:
            for c in client.containers.list(filters={"label": "edgeward.instance"}):
                started = c.attrs["State"]["StartedAt"]
                out[c.labels["edgeward.instance"]] = (h.id, c.id, started)
        finally:
            client.close()
    return out


def store_state(host: SiteHost) -> dict[str, Any]:
    store: dict[str, Any] = Client(host.enforcer.socket, timeout=5).site()["store"]
    return store


def test_with_the_stores_quorum_lost_every_host_runs_on_says_so_and_resumes_untouched(
    site: Site,
) -> None:
    hosts = site.hosts
    wait_for(lambda: all(store_state(h)["state"] == "ok" for h in hosts), 15, "a healthy store")
    before = containers(hosts)
    assert len(before) == 4, before  # shop's three replicas and extra's one, on two hosts
    stopped = site.members[1:]
    for member in stopped:  # two of three: no quorum
        member.stop()
    with Sampler(hosts) as sampler:
        wait_for(
            lambda: all(store_state(h)["state"] == "quorum lost" for h in hosts),
            TTL + 5,
            "every host saying the quorum is lost",
        )
        time.sleep(TTL)  # every lease must have expired by now: still, nothing stops
        assert containers(hosts) == before
        status = hosts[0].enforcer.cli("status")
        assert re.search(r"site-store: +quorum lost since \d{4}-\d\d-\d\dT", status.stdout), (
            status.stdout
        )
        health = Client(hosts[1].enforcer.socket, timeout=5).health()
        assert health["checks"]["site-store"].startswith("quorum lost since ")
        for member in stopped:
            member.spawn()
        for member in stopped:
            member.wait_ready()
        wait_for(lambda: all(store_state(h)["state"] == "ok" for h in hosts), 15, "the quorum back")
        wait_for(lambda: all(alive_hosts(h) == {x.id for x in hosts} for h in hosts), 15, "hosts")
        time.sleep(TTL)  # a leader's decision after the return moves nothing
    assert sampler.doubles == []
    assert containers(hosts) == before
    assert all(not store_state(h)["fenced"] for h in hosts)


def alive_hosts(host: SiteHost) -> set[str]:
    site = Client(host.enforcer.socket, timeout=5).site()
    return {h["id"] for h in site["hosts"] if h["state"] == "alive"}


def test_an_enforcer_restart_on_a_site_host_restarts_none_of_its_containers(site: Site) -> None:
    hosts = site.hosts
    before = containers(hosts)
    host = next(h for h in hosts if any(on == h.id for on, _, _ in before.values()))
    assert any(i.startswith("shop.s.") and on == host.id for i, (on, _, _) in before.items())
    with Sampler(hosts) as sampler:
        stopped = time.monotonic()
        host.enforcer.stop()
        down = time.monotonic() - stopped
        host.enforcer.start()
        up = time.monotonic() - stopped - down
        wait_for(lambda: not store_state(host)["fenced"], 30, "the host settled")
        took = time.monotonic() - stopped
        print(f"enforcer restart: {down:.1f}s down, {up:.1f}s up, registered after {took:.1f}s")
        assert took < 5 * TTL, "the restart took longer than a stopped host is held"
        time.sleep(TTL + 1)  # past a lease TTL and the leader's grace: nothing moved
    assert sampler.doubles == []
    assert containers(hosts) == before


def has_image(host: SiteHost, ref: str) -> bool:
    client = docker.DockerClient(base_url=host.engine.url, timeout=10)
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False
    finally:
        client.close()


def test_every_host_pulls_ahead_so_an_instance_moves_with_its_registry_gone(
    site: Site, tmp_path: Path
) -> None:
    hosts = site.hosts
    registry = Registry(tmp_path / "registry")
    registry.start()
    try:
        client = docker.DockerClient(base_url=hosts[0].engine.url, timeout=60)
        try:
            ref = import_image(client, f"{registry.address}/edgeward/ahead", "1")
            push(client, ref)
            client.images.remove(ref)
        finally:
            client.close()
        result = hosts[0].enforcer.apply(app("ahead", sleeper("s", ref)))
        assert result.returncode == 0, result.stderr
        (victim_id,) = wait_placed(hosts, {"ahead.s.0"}, timeout=30).values()
        wait_for(lambda: all(has_image(h, ref) for h in hosts), 20, "the image on every host")
    finally:
        registry.stop()
    victim = next(h for h in hosts if h.id == victim_id)
    victim.kill()
    moved = wait_placed(hosts, {"ahead.s.0"}, timeout=TTL + 10)
    assert moved["ahead.s.0"] != victim.id
    victim.enforcer.start()  # back for the next test
    victim.alive = True


def test_an_instance_needing_a_camera_runs_on_a_host_with_one_and_moves_when_it_is_unplugged(
    site: Site, test_image: str
) -> None:
    hosts = site.hosts
    doc = app("cam", sleeper("s", test_image, placement={"devices": ["camera"]}))
    result = hosts[0].enforcer.apply(doc)
    assert result.returncode == 0, result.stderr
    (first,) = wait_placed(hosts, {"cam.s.0"}, timeout=30).values()
    assert first in ("h2", "h3")
    other = "h3" if first == "h2" else "h2"
    with Sampler(hosts) as sampler:
        site.cameras[["h2", "h3"].index(first)].remove()  # unplugged: the kernel's uevent
        wait_for(lambda: placement(hosts).get("cam.s.0") == [other], 30, "the move")
    assert sampler.doubles == []


def test_a_host_cut_off_stops_its_replicas_before_they_start_elsewhere_and_returns_cleanly(
    site: Site, test_image: str
) -> None:
    hosts = site.hosts
    result = hosts[1].enforcer.apply(app("fence", sleeper("s", test_image, replicas=3)))
    assert result.returncode == 0, result.stderr
    wanted = {"fence.s.0", "fence.s.1", "fence.s.2"}
    placed = wait_placed(hosts, wanted, timeout=30)
    assert set(placed.values()) == {"h1", "h2", "h3"}, placed
    (theirs,) = (i for i, on in placed.items() if on == "h1")
    with Sampler(hosts) as sampler:
        with cut_off(1):
            wait_for(
                lambda: placement(hosts).get(theirs, []) not in ([], ["h1"]), TTL + 10, "the move"
            )
            assert theirs not in hosts[0].running()
            assert store_state(hosts[1])["state"] == "ok"
        wait_for(lambda: "h1" in alive_hosts(hosts[1]), 15, "h1 registered again")
        wait_for(lambda: not store_state(hosts[0])["fenced"], 10, "h1 no longer fenced")
        time.sleep(1)
    assert sampler.doubles == [], f"instances ran on two hosts at once: {sampler.doubles}"
    after = wait_placed(hosts, wanted, timeout=5)
    assert after[theirs] != "h1"  # the returning host took nothing back, and nothing else moved
    assert {i: on for i, on in after.items() if i != theirs} == {
        i: on for i, on in placed.items() if i != theirs
    }
