"""Failover of a multi-host site on one machine (issue 11): a three-member etcd on 127.0.0.11-13
(plain HTTP), three hosts each with its own dockerd and `edge-enforcer run`, control absent.

1. failover  N instances run on one host (it starts first, so they all land there; the other
             two join after). The host is killed: its enforcer and its dockerd SIGKILLed, its
             containers killed. Measured from the kill to the moment all N run on the other
             two hosts (their engines sampled every 100 ms), printed beside the lease TTL.
             Also: whether any instance ran on two hosts at once, and the floor of this
             machine: how long the two surviving engines alone take to start as many such
             containers (own bridge network, 8 starts at a time per engine), no enforcer
             involved. Fencing holds the instances at least the TTL and a third of it.
2. election  The leader's enforcer is SIGKILLed: from the kill to the moment every surviving
             host's `GET /v1/site` names the same new leader.
3. memory    Resident memory (psutil RSS) of each enforcer, idle, with its instances running
             (a controller and a worker; goal for a worker: under 60 MB), and of each etcd
             member.

Everything is started by this process and stopped by pid on exit.

    .venv/bin/python bench/bench_failover.py                  # 10 and 50 instances
    .venv/bin/python bench/bench_failover.py --instances 10 --ttl 3
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import docker
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from enforcer.cli.client import Client
from tests.support.apps import app, sleeper
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine
from tests.support.etcd import ADDRESSES, EtcdMember, member_config
from tests.support.images import import_image
from tests.support.processes import wait_for
from tests.support.site import Sampler, SiteHost, placement

IMAGE = "edgeward/bench-failover:1"  # imported into every engine: no registry needed


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


@contextlib.contextmanager
def site(ttl: float, roles: tuple[str, ...]) -> Iterator[tuple[list[EtcdMember], list[SiteHost]]]:
    """The etcd members and the hosts (not started yet: their engines are, with the image)."""
    root = Path(tempfile.mkdtemp(prefix="bfo-", dir="/tmp"))
    configs = [member_config(root, None, f"m{i + 1}", a) for i, a in enumerate(ADDRESSES)]
    peers = {c.name: c.peer_url for c in configs}
    members = [EtcdMember(replace(c, initial_cluster=peers)) for c in configs]
    endpoints = ", ".join(f'"{m.config.client_url}"' for m in members)
    hosts: list[SiteHost] = []
    try:
        for m in members:
            m.spawn()
        for m in members:
            m.wait_ready()
        for n, (address, role) in enumerate(zip(ADDRESSES, roles, strict=True), start=1):
            engine = DockerEngine(root / f"d{n}")
            engine.start()
            client = docker.DockerClient(base_url=engine.url, timeout=60)
            try:
                import_image(client, IMAGE.rsplit(":", 1)[0], "1")
            finally:
                client.close()
            extra = (
                f'[cluster]\nadvertise = "{address}"\nrole = "{role}"\n'
                f'etcd-endpoints = [{endpoints}]\nlease-ttl = "{ttl:g}s"\n'
            )
            proc = EnforcerProc(
                root / f"e{n}", engine.url, extra_config=extra, host_id=f"h{n}", log_level="INFO"
            )
            hosts.append(SiteHost(engine, proc, address))
        try:
            yield members, hosts
        except BaseException:
            kept = Path(tempfile.mkdtemp(prefix="bfo-logs-", dir="/tmp"))
            for h in hosts:
                with contextlib.suppress(OSError):
                    shutil.copy(h.enforcer.log_path, kept / f"{h.id}.log")
            print(f"failed: the enforcers' logs are kept in {kept}", file=sys.stderr)
            raise
    finally:
        for h in hosts:
            h.enforcer.stop()
            with contextlib.suppress(Exception):
                if h.engine.proc is not None:
                    h.kill()
            h.enforcer.remove_firewall()
            h.engine.stop()
        for m in members:
            m.stop()
        unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def unmount_under(root: Path) -> None:
    """A SIGKILLed dockerd leaves its containers' mounts (overlay, netns) behind in `root`."""
    with open("/proc/mounts") as f:
        points = [p for p in (line.split()[1] for line in f) if p.startswith(f"{root}/")]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def kill_containers(host: SiteHost) -> None:
    client = docker.DockerClient(base_url=host.engine.url, timeout=60)
    try:
        found = client.containers.list()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda c: c.kill(), found))
    finally:
        client.close()


def leader_of(hosts: list[SiteHost]) -> str | None:
    names = {Client(h.enforcer.socket, timeout=5).site()["leader"] for h in hosts if h.alive}
    return names.pop() if len(names) == 1 else None


def failover(instances: int, ttl: float) -> None:
    with site(ttl, ("controller", "controller", "worker")) as (members, hosts):
        victim, *others = hosts
        victim.enforcer.start()
        doc = app("bench", sleeper("s", IMAGE, replicas=instances))
        result = victim.enforcer.apply(doc)
        assert result.returncode == 0, result.stderr
        wanted = {f"bench.s.{n}" for n in range(instances)}
        wait_for(lambda: victim.running() == wanted, 60 + instances, "the instances")
        for h in others:
            h.enforcer.start()
        wait_for(lambda: leader_of(hosts) is not None, 20, "a leader")
        time.sleep(2)
        idle = {h.id: rss_mb(h.enforcer.process().pid) for h in hosts}
        etcd = [rss_mb(m.proc.pid) for m in members if m.proc is not None]
        with Sampler(hosts) as sampler:
            kill_containers(victim)  # the host dies: its containers first (all at once),
            killed = time.monotonic()  # then its enforcer (from here its lease runs out)
            victim.enforcer.stop(sig=signal.SIGKILL)
            victim.alive = False
            assert victim.engine.proc is not None
            victim.engine.proc.send_signal(signal.SIGKILL)
            victim.engine.proc.wait(30)
            victim.engine.proc = None

            first: list[float] = []

            def moved() -> bool:
                found = placement(others)
                if not first and any(i in found for i in wanted):
                    first.append(time.monotonic() - killed)
                return all(len(found.get(i, [])) == 1 for i in wanted)

            wait_for(moved, 120 + instances, "the instances elsewhere", interval=0.1)
            took = time.monotonic() - killed
        spread = sorted(
            len([i for i, on in placement(others).items() if h.id in on]) for h in others
        )
        together, alone = docker_floor(others, spread)
        print(
            f"failover {instances:>3} instances: {took:5.1f}s from the kill to all running "
            f"elsewhere, the first after {first[0]:.1f}s (lease TTL {ttl:g}s; spread {spread}; "
            f"ran twice: {len({d[0] for d in sampler.doubles})})\n"
            f"    of which: fencing holds them at least {ttl * 4 / 3:.1f}s (the lease TTL, then "
            f"a third of it); the engines alone start {spread} such containers in "
            f"{together:.1f}s, each engine on its own {alone:.1f}s"
        )
        if instances == min(ARGS.instances):
            print(
                f"memory: enforcer with {instances} instances: controller {idle['h1']:.0f} MB, "
                f"controller {idle['h2']:.0f} MB, worker {idle['h3']:.0f} MB (goal < 60); "
                f"etcd members {', '.join(f'{m:.0f}' for m in etcd)} MB; a controller's "
                f"enforcer + its etcd member {idle['h2'] + etcd[1]:.0f} MB"
            )


def removed(net: docker.models.networks.Network) -> bool:
    """Whether `net` went: its endpoints may outlive their containers' removal a moment."""
    try:
        net.remove()
    except docker.errors.APIError as exc:
        if "active endpoints" in str(exc):
            return False
        raise
    return True


def docker_floor(hosts: list[SiteHost], counts: list[int]) -> tuple[float, float]:
    """Seconds the engines take to start `counts` containers like the instances (a bridge
    network of their own, 8 starts at a time per engine, as the enforcer does), with no
    enforcer involved: all engines at once (what they cost of a failover on this machine,
    where they share its cores), and each engine alone, one after the other (the slowest: as
    on a site, where each host has its own)."""

    def one(host: SiteHost, n: int) -> float:
        client = docker.DockerClient(base_url=host.engine.url, timeout=120)
        net = client.networks.create("floor", driver="bridge")
        try:
            made = [
                client.containers.create(
                    IMAGE, ["sleep", "100000"], name=f"floor{i}", network="floor"
                )
                for i in range(n)
            ]
            start = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda c: c.start(), made))
            took = time.monotonic() - start
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda c: c.remove(force=True), made))
            return took
        finally:
            wait_for(lambda: removed(net), 30, "the network removed", interval=0.2)
            client.close()

    with ThreadPoolExecutor(len(hosts)) as pool:
        together = max(pool.map(one, hosts, counts))
    alone = max(one(h, n) for h, n in zip(hosts, counts, strict=True))
    return together, alone


def election(ttl: float) -> None:
    with site(ttl, ("controller", "controller", "controller")) as (_, hosts):
        for h in hosts:
            h.enforcer.start()
        wait_for(lambda: leader_of(hosts) is not None, 20, "a leader")
        old = leader_of(hosts)
        victim = next(h for h in hosts if h.id == old)
        killed = time.monotonic()
        victim.enforcer.stop(sig=signal.SIGKILL)
        victim.alive = False
        wait_for(lambda: leader_of(hosts) not in (None, old), 30, "a new leader", interval=0.05)
        took = time.monotonic() - killed
        print(
            f"election: {took:.1f}s from killing leader {old} to {leader_of(hosts)} (TTL {ttl:g}s)"
        )


def main() -> None:
    for n in ARGS.instances:
        failover(n, ARGS.ttl)
    election(ARGS.ttl)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--ttl", type=float, default=3.0)
    ARGS = parser.parse_args()
    main()
