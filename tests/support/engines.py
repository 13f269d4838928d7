"""A private dockerd for the suite and the benches, and the real parts started together.

Each engine has its own socket, data root, exec root and a free address pool, and is stopped by
the pid we started — never by name. `python -m tests.support.engines` starts an engine and a
registry by hand for debugging.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker

from tests.support.processes import MissingPart, installed, stop_pid, wait_for
from tests.support.registry import Registry

__all__ = ["DockerEngine", "pick_address_pool", "real_parts"]


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for line in out.splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            if first != "default":
                nets.append(ipaddress.ip_network(first, strict=False))
    return nets


def pick_address_pool() -> str:
    """A /16 under 10.0.0.0/8 that no route on this machine overlaps, random per engine."""
    used = _used_networks()
    start = (os.getpid() * 7) % 200
    for i in range(200):
        net = ipaddress.ip_network(f"10.{40 + (start + i) % 200}.0.0/16")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise RuntimeError("no free 10.x.0.0/16 address pool for a test Docker engine")


def free_address_pools(count: int) -> list[str]:
    """`count` distinct /16s for engines started together (each engine's own pick cannot see
    the others' pools until they have created networks)."""
    used = _used_networks()
    start = (os.getpid() * 11) % 200
    pools: list[str] = []
    for i in range(200):
        net = ipaddress.ip_network(f"10.{40 + (start + i) % 200}.0.0/16")
        if not any(net.overlaps(u) for u in used) and str(net) not in pools:
            pools.append(str(net))
            if len(pools) == count:
                return pools
    raise RuntimeError(f"no {count} free 10.x.0.0/16 address pools for test Docker engines")


@dataclass
class DockerEngine:
    """A private dockerd: own socket, data root, exec root, pid file and address pool."""

    root: Path
    proc: subprocess.Popen[bytes] | None = None
    pool: str = ""
    extra_args: tuple[str, ...] = ()  # e.g. ("--live-restore",)
    netns: str = ""  # a network namespace to run in (`tests.support.netns`); "": the machine's

    @property
    def socket_path(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    def start(self, timeout: float = 60) -> None:
        exe = installed("dockerd", "docker.io")
        self.root.mkdir(parents=True, exist_ok=True)
        self.pool = self.pool or pick_address_pool()
        enter = ["nsenter", f"--net=/var/run/netns/{self.netns}"] if self.netns else []
        cmd = [
            *enter,
            exe,
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "dockerd.pid"),
            "--host", self.url,
            "--bridge=none",
            "--default-address-pool", f"base={self.pool},size=24",
            "--log-level", "warn",
            *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise MissingPart(f"dockerd exited ({self.proc.returncode}): {tail}")
            if not self.socket_path.exists():
                return False
            client = docker.DockerClient(base_url=self.url, timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()

        try:
            wait_for(ready, timeout, f"dockerd on {self.socket_path}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            client = docker.DockerClient(base_url=self.url, timeout=30)
            for c in client.containers.list(all=True):
                with contextlib.suppress(Exception):
                    c.remove(force=True)
            client.close()
        stop_pid(self.proc, timeout=30)
        self.proc = None
        self._unmount_data_root()

    def _unmount_data_root(self) -> None:
        """dockerd bind-mounts its data root onto itself; a killed one leaves that behind."""
        data = str(self.root / "data")
        with open("/proc/mounts") as f:
            mounted = any(line.split()[1] == data for line in f)
        if mounted:
            subprocess.run(["umount", "-l", data], check=False)

    def restart(self) -> None:
        """Stop and start the same engine (same data root): containers survive as exited."""
        if self.proc is not None:
            stop_pid(self.proc, timeout=30)
            self.proc = None
        self.start()


@contextlib.contextmanager
def real_parts(root: Path | None = None) -> Iterator[tuple[DockerEngine, Registry]]:
    """A registry and an engine under `root` (a fresh temporary directory by default)."""
    base = root or Path(tempfile.mkdtemp(prefix="ew-", dir="/tmp"))
    engine = DockerEngine(base / "d")
    registry = Registry(base / "r")
    try:
        registry.start()
        engine.start()
        yield engine, registry
    finally:
        engine.stop()
        registry.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    with real_parts() as (eng, reg):
        print(f"DOCKER_HOST={eng.url}  registry={reg.address}  (Ctrl-C stops both)")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
