"""Hosts with networks of their own: network namespaces of the suite's, joined by a bridge in
the machine's namespace that stands for the site LAN (DESIGN.md, "Tests and real parts").

`SiteLan(count)` makes `count` namespaces named `<prefix>-<n>` (the prefix is unique per LAN),
a bridge `<prefix>` holding the LAN's first address, and one veth pair per host (`<prefix>-<n>`
in the machine's namespace, `eth0` inside, the LAN's address n+1). Bridged packets pass the
machine's iptables FORWARD, whose policy Docker sets to DROP: one ACCEPT rule for the bridge is
inserted, and deleted by `stop`. Everything is removed by name when done: only what this LAN
made, never anything else. A process runs inside a host with `LanHost.enter` (nsenter
--net: `ip netns exec` remounts /sys, and dockerd then fails).

`network_site(count)` runs a site on such a LAN: per host a dockerd (the test image imported)
and an enforcer inside its namespace, the site's etcd on the machine's LAN address, the site
network on (`SITE_NETWORK`); or `count` one-host sites (`cluster=False`). Used by
tests/integration/test_site_network.py and bench/bench_sitenet.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import psutil

from enforcer.cli.client import Client
from enforcer.facade import AppRecord, AppSource
from enforcer.shared.spec.parse import application_to_document, parse_application
from enforcer.site.cluster.records import APPS, app_to_json
from enforcer.site.etcd.gateway import EtcdGateway
from enforcer.site.kv.etcd import EtcdKV
from tests.support.ci import missing
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine, free_address_pools
from tests.support.etcd import EtcdMember, member_config
from tests.support.images import import_image
from tests.support.processes import MissingPart, installed, stop_pid, wait_for

__all__ = [
    "LanHost",
    "NetHost",
    "SiteLan",
    "address_of",
    "capture",
    "control_app",
    "fetch",
    "free_lan",
    "network_site",
    "site_lan",
    "wait_running",
]


def _ip(*args: str, netns: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if check and res.returncode != 0:
        raise MissingPart(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return res


def _routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        with contextlib.suppress(ValueError, IndexError):
            if line.split()[0] != "default":
                nets.append(ipaddress.IPv4Network(line.split()[0], strict=False))
    return nets


def free_lan() -> ipaddress.IPv4Network:
    """A /24 under 10.251.0.0/16 that no route of this machine overlaps."""
    used = _routes()
    start = os.getpid() % 250
    for i in range(250):
        net = ipaddress.IPv4Network(f"10.251.{(start + i) % 250}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise MissingPart("no free 10.251.x.0/24 for a site LAN of the suite's")


@dataclass(frozen=True)
class LanHost:
    netns: str
    address: str  # on the LAN

    @property
    def enter(self) -> list[str]:
        """The command prefix that runs a program inside this host's network namespace."""
        return ["nsenter", f"--net=/var/run/netns/{self.netns}"]

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.enter, *cmd], capture_output=True, text=True, timeout=timeout, check=False
        )


@dataclass
class SiteLan:
    count: int
    prefix: str = field(default_factory=lambda: f"ewl{secrets.token_hex(3)}")
    net: ipaddress.IPv4Network = field(default_factory=free_lan)
    hosts: list[LanHost] = field(default_factory=list)
    _made: list[str] = field(default_factory=list)  # namespaces and links, in order
    _rule: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return self.prefix

    @property
    def gateway(self) -> str:
        """The machine's own address on the LAN (for parts run outside the hosts: etcd)."""
        return str(self.net.network_address + 1)

    def start(self) -> None:
        installed("nsenter", "util-linux")
        installed("ip", "iproute2")
        installed("iptables", "iptables")
        bits = self.net.prefixlen
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(f"link:{self.bridge}")
            _ip("addr", "add", f"{self.gateway}/{bits}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            self._rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            subprocess.run(["iptables", "--wait", "-I", *self._rule], check=True, timeout=20)
            for n in range(1, self.count + 1):
                self.hosts.append(self._host(n, bits))
        except BaseException:
            self.stop()
            raise

    def _host(self, n: int, bits: int) -> LanHost:
        ns, outer = f"{self.prefix}-{n}", f"{self.prefix}-{n}"
        _ip("netns", "add", ns)
        self._made.append(f"netns:{ns}")
        _ip("link", "add", outer, "type", "veth", "peer", "name", f"{self.prefix}p{n}")
        self._made.append(f"link:{outer}")
        _ip("link", "set", f"{self.prefix}p{n}", "netns", ns)
        _ip("link", "set", f"{self.prefix}p{n}", "name", "eth0", netns=ns)
        address = str(self.net.network_address + 1 + n)
        _ip("addr", "add", f"{address}/{bits}", "dev", "eth0", netns=ns)
        _ip("link", "set", "eth0", "up", netns=ns)
        _ip("link", "set", "lo", "up", netns=ns)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        return LanHost(ns, address)

    def stop(self) -> None:
        """Remove what this LAN made (by name), newest first; the rule by its exact text."""
        if self._rule:
            subprocess.run(["iptables", "--wait", "-D", *self._rule], check=False, timeout=20)
            self._rule = []
        for made in reversed(self._made):
            kind, name = made.split(":", 1)
            if kind == "netns":
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)
        self._made.clear()
        self.hosts.clear()


@contextlib.contextmanager
def site_lan(count: int) -> Iterator[SiteLan]:
    lan = SiteLan(count)
    lan.start()
    try:
        yield lan
    finally:
        lan.stop()


# -- a site of namespaced hosts ---------------------------------------------------------
TTL = 3.0
IMAGE = "edgeward-net/busybox:1"
SITE_NETWORK = 'site-network = true\nrange = "10.250.0.0/16"\n'  # no test engine's pool
PAYLOAD = "edgeward test image"  # what the image's httpd serves


@dataclass
class NetHost:
    lan: LanHost
    engine: DockerEngine
    enforcer: EnforcerProc
    etcd_url: str = ""  # the site store's, "" for a one-host site

    def docker(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.engine.url, timeout=30)

    def container(self, instance: str) -> Any:
        with contextlib.closing(self.docker()) as client:
            found = client.containers.list(filters={"label": f"edgeward.instance={instance}"})
            return found[0] if found else None

    def site(self) -> dict[str, Any]:
        return Client(self.enforcer.socket, timeout=5).site()

    def health(self) -> dict[str, Any]:
        return Client(self.enforcer.socket, timeout=5).health()

    def wireguard_go(self) -> list[psutil.Process]:
        """The wireguard-go processes its enforcer runs."""
        if self.enforcer.proc is None:
            return []
        return [c for c in self.enforcer.process().children() if c.name() == "wireguard-go"]

    def kill(self) -> None:
        """The host dies: its enforcer, its wireguard-go and its containers are killed."""
        tunnel = self.wireguard_go()
        self.enforcer.stop(sig=signal.SIGKILL)
        for p in tunnel:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        with contextlib.closing(self.docker()) as client:
            for c in client.containers.list():
                with contextlib.suppress(docker.errors.APIError):
                    c.kill()


@contextlib.contextmanager
def network_site(
    count: int,
    network: str | list[str] = SITE_NETWORK,
    cluster: bool = True,
    enforcer_path: str = "",
    blocked: frozenset[int] = frozenset(),
    sites: int = 1,
) -> Iterator[tuple[SiteLan, list[NetHost]]]:
    """`count` namespaced hosts, each with its engine (the test image in it) and enforcer,
    of one site on an etcd at the machine's LAN address (`cluster`), or each a one-host site.
    The hosts numbered in `blocked` drop what comes in on the WireGuard port (in their own
    namespace's INPUT, before their enforcer starts). With `sites` > 1 the hosts are that many
    sites on the one LAN (host n of `site-<(n-1) % sites + 1>`), each on an etcd of its own,
    each host started once the one before has its site network up (or refused). `network`: the
    `[network]` table of every host, or one per host."""
    for program, package in (("wg", "wireguard-tools"), ("tcpdump", "tcpdump")):
        if shutil.which(program) is None:
            missing(f"{program} is not installed (apt-get install {package})")
    root = Path(tempfile.mkdtemp(prefix="sitenet-", dir="/tmp"))
    lan = SiteLan(count)
    stores: list[EtcdMember] = []
    engines: list[DockerEngine] = []
    hosts: list[NetHost] = []
    try:
        try:
            lan.start()
        except MissingPart as exc:
            missing(str(exc))
        for k in range(1, sites + 1):
            stores.append(EtcdMember(member_config(root, None, f"etcd{k}", lan.gateway)))
            stores[-1].start()
        pools = free_address_pools(count)
        for n, (member, pool) in enumerate(zip(lan.hosts, pools, strict=True), start=1):
            if n in blocked:
                drop = ["iptables", "--wait", "-I", "INPUT", "-p", "udp", "--dport", "51820"]
                subprocess.run([*member.enter, *drop, "-j", "DROP"], check=True, timeout=20)
            engines.append(DockerEngine(root / f"d{n}", pool=pool, netns=member.netns))
        with ThreadPoolExecutor(count) as pool_of:  # the engines start side by side
            list(pool_of.map(_boot, engines))
        for n, (member, engine) in enumerate(zip(lan.hosts, engines, strict=True), start=1):
            config = f"[network]\n{network if isinstance(network, str) else network[n - 1]}"
            etcd = stores[(n - 1) % sites]
            if cluster:
                config += (
                    f'[cluster]\nadvertise = "{member.address}"\n'
                    f'etcd-endpoints = ["{etcd.config.client_url}"]\nlease-ttl = "{TTL:g}s"\n'
                )
            proc = EnforcerProc(root / f"e{n}", engine.url, extra_config=config,
                                host_id=f"host-{n}", host_labels={"role": f"h{n}"},
                                netns=member.netns, log_level="INFO",
                                site=f"site-{(n - 1) % sites + 1}" if sites > 1 else "test-site")  # fmt: skip
            if sites > 1 and hosts:  # the one before has its site's range (its engine ran)
                settled = functools.partial(_network_settled, hosts[-1])
                wait_for(settled, 30, f"{hosts[-1].enforcer.host_id}'s site network")
            hosts.append(NetHost(member, engine, proc, etcd.config.client_url if cluster else ""))
            path = os.environ["PATH"]
            os.environ["PATH"] = enforcer_path or path  # the enforcer's own (it inherits ours)
            try:
                proc.start()
            finally:
                os.environ["PATH"] = path
        yield lan, hosts
    finally:
        for h in hosts:
            tunnel = h.wireguard_go() if h.enforcer.proc is not None else []
            h.enforcer.stop()  # it ends its wireguard-go; one it could not end, we do
            for p in tunnel:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
        with ThreadPoolExecutor(max(1, len(engines))) as pool_of:
            list(pool_of.map(DockerEngine.stop, engines))
        for store in stores:
            store.stop()
        lan.stop()  # the namespaces go, and their interfaces, chains and routes with them
        for h in hosts:
            print(f"--- {h.enforcer.host_id} ---\n{h.enforcer.log_tail(3000)}")
        shutil.rmtree(root, ignore_errors=True)


def _boot(engine: DockerEngine) -> None:
    engine.start()
    repository, tag = IMAGE.split(":")
    with contextlib.closing(docker.DockerClient(base_url=engine.url)) as client:
        import_image(client, repository, tag)


def _network_settled(host: NetHost) -> bool:
    network = host.site().get("network") or {}
    return bool(network.get("slice") or network.get("error"))


def control_app(host: NetHost, document: dict[str, Any], tenant: str) -> None:
    """Into the site store, the record of an application of `tenant` from control, exactly as
    the site's leader writes it when control's desired state arrives (`publish_control_apps`):
    a tenant's application on a site without running control."""
    app = parse_application(document, tenant=tenant)
    rec = AppRecord(app.name, app.version, app.tenant, AppSource.CONTROL,
                    application_to_document(app), time.time())  # fmt: skip

    async def put() -> None:
        kv = EtcdKV(EtcdGateway([host.etcd_url]))
        try:
            await kv.put(APPS + app.name, app_to_json(rec))
        finally:
            await kv.close()

    asyncio.run(put())


def wait_running(host: NetHost, instance: str, timeout: float = 30) -> Any:
    wait_for(lambda: host.container(instance) is not None, timeout, f"{instance} on {host.lan}")
    return host.container(instance)


def address_of(container: Any) -> str:
    container.reload()
    nets = container.attrs["NetworkSettings"]["Networks"]
    return str(next(iter(nets.values()))["IPAddress"])


@contextlib.contextmanager
def capture(lan: SiteLan, path: Path) -> Iterator[None]:
    """tcpdump on the LAN bridge: every packet, headers and payload as text, into `path`."""
    with path.open("wb") as out:
        proc = subprocess.Popen(
            ["tcpdump", "-i", lan.bridge, "-nn", "-l", "-A", "-s", "0"],
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
    try:
        time.sleep(0.5)  # tcpdump listening
        yield
        time.sleep(0.3)
    finally:
        stop_pid(proc, 5, signal.SIGINT)


def fetch(client: Any, url: str, timeout: float) -> tuple[int, str]:
    """wget in the client container until it answers (busybox's wget -T crashes: a dead
    tunnel ends the test by its timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        code, out = client.exec_run(["wget", "-q", "-O", "-", url])
        if code == 0 or time.monotonic() > deadline:
            return code, out.decode(errors="replace")
        time.sleep(0.3)
