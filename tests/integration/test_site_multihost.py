"""A three-host site on one machine: one etcd on loopback, three enforcers each with its own
dockerd, advertising 127.0.0.11/12/13. The leader spreads an application's replicas over the
hosts; when a host dies (its enforcer SIGKILLed, its containers with it), its instances run on
the others within the lease TTL and a few seconds, and no instance runs on two hosts at once;
when it returns it runs nothing that moved.
"""

from __future__ import annotations

import time

from enforcer.cli.client import Client
from tests.support.apps import app, sleeper
from tests.support.site import Sampler, SiteHost, placement, running_site, wait_placed

TTL = 3.0


def alive_in_site(host: SiteHost) -> bool:
    """Whether the host's own `GET /v1/site` lists it as alive."""
    site = Client(host.enforcer.socket, timeout=5).site()
    return any(h["id"] == host.id and h["state"] == "alive" for h in site["hosts"])


def test_replicas_spread_and_a_dead_hosts_instances_move_without_running_twice(
    test_image: str,
) -> None:
    with running_site(3, lease_ttl=f"{TTL:g}s") as hosts:
        result = hosts[2].enforcer.apply(app("web", sleeper("main", test_image, replicas=2)))
        assert result.returncode == 0, result.stderr
        wanted = {"web.main.0", "web.main.1"}
        placed = wait_placed(hosts, wanted, timeout=40)
        assert len(set(placed.values())) == 2, f"replicas not spread: {placed}"
        site = Client(hosts[0].enforcer.socket, timeout=5).site()
        assert [(h["id"], h["address"], h["state"]) for h in site["hosts"]] == [
            (h.id, h.address, "alive") for h in hosts
        ]
        assert site["leader"] in {h.id for h in hosts}
        assert (site["store"]["kind"], site["store"]["state"]) == ("etcd", "ok")
        with Sampler(hosts) as sampler:
            victim = next(h for h in hosts if h.id == placed["web.main.0"])
            killed = time.monotonic()
            victim.kill()
            moved = wait_placed(hosts, wanted, timeout=TTL + 15)
            took = time.monotonic() - killed
            time.sleep(1)  # and nothing starts twice right after
        assert victim.id not in moved.values(), moved
        assert len(set(moved.values())) == 2, f"replicas not spread after failover: {moved}"
        print(f"failover: {took:.1f}s, {sampler.samples} samples, {placed} -> {moved}")
        assert took < TTL + 5, f"failover took {took:.1f}s with a lease TTL of {TTL:g}s"
        assert sampler.samples > 10
        assert sampler.doubles == [], f"instances ran on two hosts at once: {sampler.doubles}"
        assert set(placement(hosts)) == wanted
        survivor = next(h for h in hosts if h.alive)
        site = Client(survivor.enforcer.socket, timeout=5).site()
        states = {h["id"]: h["state"] for h in site["hosts"]}
        assert states == {h.id: "alive" if h.alive else "dead" for h in hosts}, site
        assert site["leader"] != victim.id

        # the dead host returns: it runs nothing that moved, and nothing starts twice
        victim.enforcer.start()
        victim.alive = True
        with Sampler(hosts) as sampler:
            deadline = time.monotonic() + 15
            while not alive_in_site(victim):
                assert time.monotonic() < deadline, "the returning host did not register"
                time.sleep(0.2)
            time.sleep(2)
        assert sampler.doubles == [], f"instances ran on two hosts at once: {sampler.doubles}"
        assert wait_placed(hosts, wanted, timeout=5) == moved
        assert victim.running() == set()

        # a host leaves the site: its replica moves first (stopped there, then started on the
        # host that runs none), never running twice; then it is gone from the site
        leaver = next(h for h in hosts if h.id == moved["web.main.0"])
        with Sampler(hosts) as sampler:
            left = leaver.enforcer.cli("site", "leave")
            time.sleep(0.5)
        assert left.returncode == 0, left.stderr
        assert left.stdout.strip() == f"host {leaver.id} left site test-site"
        assert "warning: [cluster] advertise is set in the configuration" in left.stderr
        assert sampler.doubles == [], f"instances ran on two hosts at once: {sampler.doubles}"
        assert leaver.running() == set()
        after = wait_placed(hosts, wanted, timeout=5)
        assert after == {**moved, "web.main.0": victim.id}, after
        site = Client(victim.enforcer.socket, timeout=5).site()
        assert leaver.id not in {h["id"] for h in site["hosts"]}
