"""Hosts with networks of their own: network namespaces of the suite's, joined by a bridge in
the machine's namespace that stands for the site LAN (DESIGN.md, "Tests and real parts").

`SiteLan(count)` makes `count` namespaces named `<prefix>-<n>` (the prefix is unique per LAN),
a bridge `<prefix>` holding the LAN's first address, and one veth pair per host (`<prefix>-<n>`
in the machine's namespace, `eth0` inside, the LAN's address n+1). Bridged packets pass the
machine's iptables FORWARD, whose policy Docker sets to DROP: one ACCEPT rule for the bridge is
inserted, and deleted by `stop`. Everything is removed by name when done: only what this LAN
made, never anything else. A process runs inside a host with `LanHost.enter` (nsenter
--net: `ip netns exec` remounts /sys, and dockerd then fails).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.support.processes import MissingPart, installed

__all__ = ["LanHost", "SiteLan", "free_lan", "site_lan"]


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
