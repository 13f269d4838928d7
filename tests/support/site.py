"""A multi-host site on one machine: one etcd on loopback, and hosts that each run their own
dockerd and `edge-enforcer run`, advertising 127.0.0.11, .12, ... Every part is stopped by the
pid we started. `Sampler` watches the engines every 100 ms for an instance on two hosts at once.

`running_site` gives the hosts one etcd of the test's (`[cluster] etcd-endpoints`);
`managed_site` lets the hosts run the site's own etcd members: the first controller creates the
site, the others join with bundles (`ManagedSite.add`, `ManagedSite.bundle`).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker

from enforcer.cli.client import Client
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine
from tests.support.etcd import EtcdProcess
from tests.support.processes import free_port

__all__ = [
    "ManagedSite",
    "Sampler",
    "SiteHost",
    "managed_site",
    "placement",
    "running_site",
    "wait_placed",
]


@dataclass
class SiteHost:
    engine: DockerEngine
    enforcer: EnforcerProc
    address: str
    alive: bool = True
    ports: tuple[int, int, int] = (0, 0, 0)  # a managed site's client, peer and join ports

    @property
    def id(self) -> str:
        return self.enforcer.host_id

    def container_ids(self) -> dict[str, str]:
        """instance -> the id of its running container in this host's engine."""
        client = docker.DockerClient(base_url=self.engine.url, timeout=5)
        try:
            found = client.containers.list(filters={"label": "edgeward.instance"})
            return {c.labels["edgeward.instance"]: c.id for c in found}
        finally:
            client.close()

    def etcd_pids(self) -> list[int]:
        """The etcd processes its enforcer runs as children (its managed member)."""
        if self.enforcer.proc is None:
            return []
        children = self.enforcer.process().children()
        return [c.pid for c in children if c.name() == "etcd"]

    def running(self) -> set[str]:
        """The instances whose containers run in this host's engine now."""
        client = docker.DockerClient(base_url=self.engine.url, timeout=5)
        try:
            found = client.containers.list(filters={"label": "edgeward.instance"})
            return {c.labels["edgeward.instance"] for c in found}
        finally:
            client.close()

    def kill(self) -> None:
        """The host dies: its enforcer is SIGKILLed and every container in its engine with it."""
        self.enforcer.stop(sig=signal.SIGKILL)
        client = docker.DockerClient(base_url=self.engine.url, timeout=30)
        try:
            for c in client.containers.list():
                with contextlib.suppress(docker.errors.APIError):
                    c.kill()
        finally:
            client.close()
        self.alive = False


@contextlib.contextmanager
def running_site(count: int, lease_ttl: str = "3s") -> Iterator[list[SiteHost]]:
    """`count` hosts (host-1 ...) on one etcd, each with its own engine; all stopped after."""
    root = Path(tempfile.mkdtemp(prefix="site-", dir="/tmp"))
    etcd = EtcdProcess(root / "etcd")
    hosts: list[SiteHost] = []
    try:
        etcd.start()
        for n in range(1, count + 1):
            engine = DockerEngine(root / f"d{n}")
            engine.start()
            address = f"127.0.0.{10 + n}"
            cluster = (
                f'[cluster]\nadvertise = "{address}"\netcd-endpoints = ["{etcd.client_url}"]\n'
                f'lease-ttl = "{lease_ttl}"\n'
            )
            proc = EnforcerProc(
                root / f"e{n}", engine.url, extra_config=cluster, host_id=f"host-{n}"
            )
            hosts.append(SiteHost(engine, proc, address))
            proc.start()
        yield hosts
    finally:
        for h in hosts:
            h.enforcer.stop()
            h.enforcer.remove_firewall()
            h.enforcer.unmount_secrets()
            h.engine.stop()
        etcd.stop()
        for h in hosts:  # the enforcers' logs, for a failing test's report
            print(f"--- {h.id} ---\n{h.enforcer.log_tail(3000)}")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Sampler:
    """Samples the live hosts' engines every 100 ms; `doubles` lists each instance seen
    running on two hosts in one sample."""

    hosts: list[SiteHost]
    doubles: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            seen: dict[str, list[str]] = {}
            for h in [h for h in self.hosts if h.alive]:
                with contextlib.suppress(Exception):  # an engine being killed
                    for iid in h.running():
                        seen.setdefault(iid, []).append(h.id)
            self.doubles += [(i, tuple(on)) for i, on in seen.items() if len(on) > 1]
            self.samples += 1
            self._stop.wait(0.1)


def placement(hosts: list[SiteHost]) -> dict[str, list[str]]:
    """instance -> the live hosts whose engines run it now."""
    out: dict[str, list[str]] = {}
    for h in hosts:
        if h.alive:
            for iid in h.running():
                out.setdefault(iid, []).append(h.id)
    return out


def wait_placed(hosts: list[SiteHost], instances: set[str], timeout: float) -> dict[str, str]:
    """Once each of `instances` runs on exactly one live host: instance -> host."""
    found: dict[str, list[str]] = {}

    def placed() -> bool:
        nonlocal found
        found = placement(hosts)
        return all(len(found.get(i, [])) == 1 for i in instances)

    deadline = time.monotonic() + timeout
    while not placed():
        if time.monotonic() > deadline:
            raise TimeoutError(f"instances {sorted(instances)} not placed: {found}")
        time.sleep(0.1)
    return {i: found[i][0] for i in instances}


def cluster_table(
    address: str,
    ports: tuple[int, int, int],
    *,
    role: str = "controller",
    join: str = "",
    lease_ttl: str = "3s",
) -> str:
    """A `[cluster]` table for a host of a managed site; without `address` only its ports (a
    one-host site that may join one later)."""
    table = (
        f'[cluster]\nlease-ttl = "{lease_ttl}"\n'
        f"client-port = {ports[0]}\npeer-port = {ports[1]}\njoin-port = {ports[2]}\n"
    )
    if address:
        table += f'advertise = "{address}"\nrole = "{role}"\n'
    return table + (f'join = "{join}"\n' if join else "")


@dataclass
class ManagedSite:
    """Hosts under `root` whose site store is their own etcd members. Hosts made with
    `docker=False` point at an engine that does not exist (enough for joining and the
    site's state: they run no containers)."""

    root: Path
    lease_ttl: str = "3s"
    hosts: list[SiteHost] = field(default_factory=list)

    def add(
        self,
        *,
        role: str = "controller",
        join: str = "",
        cluster: bool = True,
        docker: bool = True,
        start: bool = True,
        host_id: str = "",
        address: str = "",
    ) -> SiteHost:
        """Host n (host-<n> on 127.0.0.<10+n>): the first controller when `join` is empty; with
        `cluster=False` a one-host site on SQLite (its `[cluster]` table names only ports)."""
        n = len(self.hosts) + 1
        address = address or f"127.0.0.{10 + n}"
        engine = DockerEngine(self.root / f"d{n}")
        if docker:
            engine.start()
        url = engine.url if docker else f"unix://{self.root}/no-docker-{n}.sock"
        ports = (free_port(), free_port(), free_port())
        extra = cluster_table(
            address if cluster else "", ports, role=role, join=join, lease_ttl=self.lease_ttl
        )
        proc = EnforcerProc(
            self.root / f"e{n}", url, extra_config=extra, host_id=host_id or f"host-{n}"
        )
        host = SiteHost(engine, proc, address, alive=docker, ports=ports)
        self.hosts.append(host)
        if start:
            proc.start()
        return host

    def bundle(
        self, on: SiteHost | None = None, role: str = "controller", expires: str = "1h"
    ) -> str:
        """A join bundle from `on` (the first host), as `edge-enforcer site join-bundle`
        prints it (asked through the API: no CLI process to start)."""
        host = on or self.hosts[0]
        return str(Client(host.enforcer.socket, timeout=30).join_bundle(role, expires)["bundle"])

    def stop(self) -> None:
        # The joined hosts at once, then the first (the store's leader, most likely): a leader
        # stopped while its followers stop too waits seconds for a leadership transfer.
        for h in self.hosts[1:]:
            if h.enforcer.proc is not None and h.enforcer.proc.poll() is None:
                h.enforcer.proc.send_signal(signal.SIGTERM)
        for h in [*self.hosts[1:], *self.hosts[:1]]:
            h.enforcer.stop()
            h.enforcer.remove_firewall()
            h.enforcer.unmount_secrets()
            h.engine.stop()


@contextlib.contextmanager
def managed_site(lease_ttl: str = "3s") -> Iterator[ManagedSite]:
    """A site of hosts with managed etcd members (added with `ManagedSite.add`); every part
    stopped by its pid after."""
    root = Path(tempfile.mkdtemp(prefix="msite-", dir="/tmp"))
    site = ManagedSite(root, lease_ttl)
    try:
        yield site
    finally:
        site.stop()
        for h in site.hosts:
            print(f"--- {h.id} ---\n{h.enforcer.log_tail(3000)}")
        shutil.rmtree(root, ignore_errors=True)
