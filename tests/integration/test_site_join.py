"""A site's own store and joining it, with real enforcers and their real etcd members on
loopback addresses. The hosts of the first tests run no containers (their engine does not
exist), so they need no dockerd; the last test grows a one-host site that runs an application.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from enforcer.cli.client import Client, ClientError
from enforcer.site.cluster.joining import parse_join_bundle
from enforcer.site.etcd.certs import load_site_ca
from tests.support.apps import app, sleeper
from tests.support.ci import missing
from tests.support.control import ControlProcess
from tests.support.http import request
from tests.support.processes import Exited, MissingPart, installed, wait_for
from tests.support.site import ManagedSite, SiteHost, managed_site, wait_placed

# Joining is not failover: a lease long enough that a slow disk under etcd (a second or two
# without fsync answering, seen on a loaded CI machine) never makes a live host look dead here.
LEASE_TTL = "8s"


@pytest.fixture(scope="module")
def site() -> Iterator[ManagedSite]:
    """host-1, the site's first controller (no containers)."""
    try:
        installed("etcd", "etcd-server")
    except MissingPart as exc:
        missing(str(exc))
    with managed_site(LEASE_TTL) as made:
        made.add(docker=False)
        yield made


def hosts_json(host: SiteHost) -> dict[str, Any]:
    result = host.enforcer.cli("site", "hosts", "-o", "json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def alive(host: SiteHost) -> list[tuple[str, str, str]]:
    """The live hosts as `host` sees them (`GET /v1/site`, what `site hosts` shows)."""
    hosts = Client(host.enforcer.socket, timeout=5).site()["hosts"]
    return sorted((h["id"], h["role"], h["address"]) for h in hosts if h["state"] == "alive")


def link(host: SiteHost) -> dict[str, Any]:
    """The control link as `host` shows it (`GET /v1/site`)."""
    shown: dict[str, Any] = Client(host.enforcer.socket, timeout=5).site()["control"]
    return shown


def fenced(host: SiteHost) -> bool:
    return bool(Client(host.enforcer.socket, timeout=5).site()["store"]["fenced"])


def wait_alive(host: SiteHost, wanted: list[tuple[str, str, str]], timeout: float = 15) -> None:
    wait_for(lambda: alive(host) == wanted, timeout, f"hosts {wanted} alive")


def test_the_first_controller_runs_its_own_member_speaking_only_tls(site: ManagedSite) -> None:
    first = site.hosts[0]
    wait_alive(first, [("host-1", "controller", "127.0.0.11")])
    doc = hosts_json(first)
    assert doc["leader"] == "host-1"
    store = doc["store"]
    assert isinstance(store, dict) and (store["kind"], store["state"]) == ("etcd", "ok")
    [pid] = first.etcd_pids()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    client_url = f"https://127.0.0.11:{first.ports[0]}"
    assert f"--listen-client-urls={client_url}" in argv
    assert f"--listen-peer-urls=https://127.0.0.11:{first.ports[1]}" in argv
    assert "--client-cert-auth=true" in argv and "--peer-client-cert-auth=true" in argv
    ca = load_site_ca(first.enforcer.state_dir / "cluster" / "ca")
    assert ca is not None
    # the site CA's server certificate, but no client certificate: refused
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    with pytest.raises((ssl.SSLError, OSError, aiohttp.ClientError)):
        request("POST", client_url + "/v3/maintenance/status", body=b"{}", context=context)
    # a dead member is started again by its enforcer, with the site's data
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: first.etcd_pids() not in ([], [pid]), 15, "the member restarted")
    wait_alive(first, [("host-1", "controller", "127.0.0.11")])


def test_a_controller_and_a_worker_join_and_every_host_sees_the_site(site: ManagedSite) -> None:
    printed = site.hosts[0].enforcer.cli("site", "join-bundle", "--role", "controller")
    assert printed.returncode == 0, printed.stderr
    bundle = printed.stdout.strip()
    assert "warning: the site will have 2 controllers: an even count" in printed.stderr
    parsed = parse_join_bundle(bundle)
    assert parsed.url == f"https://127.0.0.11:{site.hosts[0].ports[2]}"
    assert parsed.endpoints == (f"https://127.0.0.11:{site.hosts[0].ports[0]}",)
    second = site.add(docker=False, cluster=False)  # a running one-host site, then `site join`
    result = second.enforcer.cli("site", "join", bundle, "--advertise", second.address)
    assert result.returncode == 0, result.stderr
    assert "joined site test-site as a controller" in result.stdout
    assert "warning: the site has 2 controllers: an even count tolerates no more" in result.stderr
    assert len(second.etcd_pids()) == 1
    worker = site.add(docker=False, role="worker", join=site.bundle(role="worker"))
    assert worker.etcd_pids() == []
    everyone = [
        ("host-1", "controller", "127.0.0.11"),
        ("host-2", "controller", "127.0.0.12"),
        ("host-3", "worker", "127.0.0.13"),
    ]
    for host in site.hosts:
        wait_alive(host, everyone)
    leaders = {Client(h.enforcer.socket).site()["leader"] for h in site.hosts}
    assert len(leaders) == 1 and leaders <= {"host-1", "host-2", "host-3"}
    table = site.hosts[2].enforcer.cli("site", "hosts")
    assert table.returncode == 0, table.stderr
    assert "host-2  127.0.0.12  controller  alive" in table.stdout
    shown = hosts_json(worker)
    assert shown["leader"] in leaders
    assert [(h["id"], h["address"], h["role"], h["state"]) for h in shown["hosts"]] == [
        (i, a, r, "alive") for i, r, a in everyone
    ]
    # a worker prints no bundles
    refused = worker.enforcer.cli("site", "join-bundle")
    assert refused.returncode == 1
    assert "only a controller of the site can print join bundles" in refused.stderr
    # both restart from what they kept: no bundle is used twice, the member rejoins its peers
    for host in (second, worker):
        host.enforcer.stop()
        host.enforcer.start()
    for host in (second, worker):  # registered again (its previous run's registration taken back)
        wait_for(lambda h=host: not fenced(h), 15, f"{host.id} registered again")
    assert len(second.etcd_pids()) == 1
    wait_alive(site.hosts[0], everyone)
    wait_alive(second, everyone)


def reencoded(bundle: str, **changes: object) -> str:
    raw = json.loads(base64.urlsafe_b64decode(bundle + "=" * (-len(bundle) % 4)))
    raw.update(changes)
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def test_a_wrong_used_or_expired_bundle_is_refused_and_changes_nothing(
    site: ManagedSite,
) -> None:
    before = alive(site.hosts[0])
    joiner = site.add(docker=False, cluster=False, address="127.0.0.14")
    good = site.bundle(role="worker")
    expired = site.bundle(role="worker", expires="1s")
    used = site.bundle(role="worker")
    twin = site.add(docker=False, cluster=False, host_id="host-1", address="127.0.0.15")
    result = twin.enforcer.cli("site", "join", used, "--advertise", twin.address)
    assert result.returncode == 1
    assert "a host with id host-1 is already in the site (at 127.0.0.11)" in result.stderr
    time.sleep(1.2)
    cases = [
        (reencoded(good, ca_fingerprint="ab" * 32), "refusing to join (a wrong bundle"),
        (reencoded(good, secret="not-the-secret"), "the join bundle's secret is not known"),
        (expired, "this join bundle expired at"),
    ]
    result = joiner.enforcer.cli("site", "join", "garbled", "--advertise", joiner.address)
    assert result.returncode == 1
    assert result.stderr == (
        "edge-enforcer: error: cannot join the site: the join bundle is garbled: it is not the "
        "one line that `edge-enforcer site join-bundle` printed\n"
    )
    api = Client(joiner.enforcer.socket, timeout=30)
    for bundle, wanted in cases:
        with pytest.raises(ClientError) as refused:
            api.join(bundle, joiner.address)
        assert refused.value.status == 422 and wanted in refused.value.message, wanted
    # an address the controller cannot reach: it says which address and port failed
    rule = ["INPUT", "-d", joiner.address, "-p", "tcp", "--dport", str(joiner.ports[1])]
    subprocess.run(
        ["iptables", "-I", *rule, "-j", "REJECT", "--reject-with", "tcp-reset"], check=True
    )
    try:
        result = joiner.enforcer.cli("site", "join", good, "--advertise", joiner.address)
    finally:
        subprocess.run(
            ["iptables", "-D", *rule, "-j", "REJECT", "--reject-with", "tcp-reset"], check=True
        )
    assert result.returncode == 1
    assert (
        f"host {joiner.id} advertises 127.0.0.14, but controller host-1 cannot reach "
        f"127.0.0.14:{joiner.ports[1]}: connection refused"
    ) in result.stderr, result.stderr
    # nothing changed: the joiner is still a one-host site, the site has the same hosts
    site_doc = Client(joiner.enforcer.socket).site()
    assert site_doc["store"]["kind"] == "sqlite", site_doc
    assert joiner.etcd_pids() == [] and not (joiner.enforcer.state_dir / "cluster").exists()
    assert alive(site.hosts[0]) == before
    # a host given a bad bundle in its configuration does not start, and says why
    with pytest.raises(Exited) as exited:
        site.add(docker=False, join="garbled", address="127.0.0.16")
    assert "edge-enforcer: error: cannot join the site: the join bundle is garbled" in str(
        exited.value
    )
    # a bundle works once
    result = joiner.enforcer.cli("site", "join", used, "--advertise", joiner.address)
    assert result.returncode == 0, result.stderr
    again = twin.enforcer.cli("site", "join", used, "--advertise", twin.address)
    assert again.returncode == 1
    assert f"this join bundle was used already (by host {joiner.id})" in again.stderr


def test_a_worker_and_a_controller_leave_and_the_last_controller_may_not(
    site: ManagedSite,
) -> None:
    first, second, worker = site.hosts[0], site.hosts[1], site.hosts[3]
    assert (second.id, worker.id) == ("host-2", "host-4")
    result = worker.enforcer.cli("site", "leave")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "host host-4 left site test-site"
    assert "host-4" not in {h for h, _, _ in alive(first)}  # deregistered at once
    shown = Client(worker.enforcer.socket).site()
    assert shown["store"]["kind"] == "sqlite", shown  # a one-host site again, at once
    assert not (worker.enforcer.state_dir / "cluster").exists()
    result = second.enforcer.cli("site", "leave")
    assert result.returncode == 0, result.stderr
    assert second.etcd_pids() == []  # its member stopped, and removed from the cluster:
    printed = first.enforcer.cli("site", "join-bundle", "--role", "controller")
    assert "the site will have 2 controllers" in printed.stderr  # one member left
    wait_alive(first, [("host-1", "controller", "127.0.0.11"), ("host-3", "worker", "127.0.0.13")])
    refused = first.enforcer.cli("site", "leave")
    assert refused.returncode == 1
    assert (
        "cannot leave the site: host host-1 is the site's last controller: the site's store "
        "would go with it (join another controller first)"
    ) in refused.stderr, refused.stderr
    assert Client(first.enforcer.socket).site()["store"]["kind"] == "etcd"
    wait_alive(site.hosts[2], alive(first))  # the worker still reaches the store


def test_a_controller_without_etcd_says_which_package_and_starts_nothing(tmp_path: Path) -> None:
    with managed_site() as made:
        host = made.add(docker=False, start=False)
        host.enforcer.write_config()
        env = dict(os.environ, PATH="/nonexistent")
        result = subprocess.run(
            host.enforcer.command("run"), capture_output=True, text=True, env=env, timeout=60
        )
    assert result.returncode == 1
    assert "etcd is not installed" in result.stderr
    assert "install the Debian package etcd-server" in result.stderr
    assert not host.enforcer.socket.exists()
    assert not (host.enforcer.state_dir / "cluster").exists()


def test_a_one_host_site_grows_to_three_hosts_with_nothing_restarted(
    test_image: str, control: ControlProcess
) -> None:
    with managed_site(LEASE_TTL) as made:
        first = made.add(cluster=False)
        assert first.etcd_pids() == []  # a one-host site starts no etcd
        enrolled = first.enforcer.cli("enroll", control.bundle("store-g"))
        assert enrolled.returncode == 0, enrolled.stderr
        first.enforcer.apply(app("web", sleeper("main", test_image, replicas=2)))
        wanted = {"web.main.0", "web.main.1"}
        first.enforcer.wait_running(*wanted)
        before = first.container_ids()
        assert set(before) == wanted
        # the operator makes it the site's first controller; the daemon restarts, the
        # containers keep running
        first.enforcer.stop()
        config = first.enforcer.config_path.read_text()
        first.enforcer.config_path.write_text(
            config + f'advertise = "{first.address}"\nrole = "controller"\n'
        )
        first.enforcer.start()
        assert len(first.etcd_pids()) == 1
        wait_alive(first, [(first.id, "controller", first.address)])
        assert first.container_ids() == before
        made.add(join=made.bundle(), docker=False)  # the new hosts need no engine here
        third = made.add(cluster=False, docker=False)
        pid = third.enforcer.proc.pid if third.enforcer.proc else 0
        joined = third.enforcer.cli("site", "join", made.bundle(), "--advertise", third.address)
        assert joined.returncode == 0, joined.stderr
        assert third.enforcer.proc is not None and third.enforcer.proc.pid == pid  # no restart
        for host in made.hosts:
            wait_alive(host, sorted((h.id, "controller", h.address) for h in made.hosts))
        assert wait_placed(made.hosts, wanted, timeout=10) == {i: first.id for i in wanted}
        time.sleep(1)
        # nothing restarted: the same containers run on host 1 as before the site grew
        assert first.container_ids() == before, first.enforcer.log_tail(20000)
        assert {a["name"] for a in Client(third.enforcer.socket).applications()} == {"web"}
        # the site's control link, joined live: the enrolled site's identity, its leader syncs
        wait_for(lambda: link(first)["state"] == "connected", 15, "the leader's control link")
        wait_for(lambda: link(third).get("site") == "store-g", 15, "the site's identity")
        assert (link(third)["state"], link(third)["leader"]) == ("standby", first.id)
