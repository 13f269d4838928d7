"""Real etcd members for the tests: Debian's etcd-server on loopback addresses, TLS with a
site CA made for the test, data in a temporary directory.

The members run the command line the enforcer's managed member uses
(`enforcer.site.etcd.member.MemberConfig.command`), but as plain children of the test with no
supervisor, so a test can kill one and see how the rest of the cluster behaves.
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from enforcer.site.etcd.certs import SiteCA, TLSFiles, create_site_ca
from enforcer.site.etcd.gateway import EtcdGateway
from enforcer.site.etcd.member import MemberConfig
from tests.support.http import request
from tests.support.processes import (
    Exited,
    die_with_parent,
    free_port,
    installed,
    stop_pid,
    wait_for,
)

__all__ = ["ADDRESSES", "EtcdCluster", "EtcdMember", "EtcdProcess", "member_config"]

# Loopback addresses of a three-host site; Linux answers on all of 127.0.0.0/8 unconfigured.
ADDRESSES = ("127.0.0.11", "127.0.0.12", "127.0.0.13")


def member_config(
    root: Path,
    ca: SiteCA | None,
    name: str,
    address: str,
    cluster: dict[str, str] | None = None,
    state: str = "new",
) -> MemberConfig:
    """A member on `address` with free ports, its data and certificate under root/NAME."""
    home = root / name
    tls = ca.write_pair(home / "tls", "member", name, [address]) if ca else None
    return MemberConfig(
        name=name,
        data_dir=home / "data",
        advertise=address,
        client_port=free_port(),
        peer_port=free_port(),
        initial_cluster=cluster or {},
        cluster_state="existing" if state == "existing" else "new",
        tls=tls,
        progress_notify_interval="1s",
    )


@dataclass
class EtcdMember:
    """One etcd process of the test."""

    config: MemberConfig
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.config.data_dir.parent / "etcd.log"

    def spawn(self) -> None:
        exe = installed("etcd", "etcd-server")
        self.config.data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.config.command(exe),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )

    def wait_ready(self, timeout: float = 20) -> None:
        context = self.config.tls.client_context() if self.config.tls else None

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise Exited(f"etcd {self.config.name} exited ({self.proc.returncode}): {tail}")
            return bool(status(self.config.client_url, context))

        wait_for(ready, timeout, f"etcd member {self.config.name} at {self.config.client_url}")

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, timeout=10)
            self.proc = None


def status(client_url: str, context: ssl.SSLContext | None) -> dict[str, object]:
    """The member's /v3/maintenance/status answer (synchronously, for readiness)."""
    answer = request(
        "POST", client_url + "/v3/maintenance/status", body=b"{}", context=context, timeout=1
    )
    body: dict[str, object] = json.loads(answer.body)
    return body


@dataclass
class EtcdCluster:
    """`size` members on ADDRESSES, bootstrapped together, TLS with a fresh site CA."""

    root: Path
    size: int = 3
    ca: SiteCA = field(default_factory=lambda: create_site_ca("test-site"))
    members: list[EtcdMember] = field(default_factory=list)
    client_tls: TLSFiles | None = None

    def start(self) -> None:
        configs = [
            member_config(self.root, self.ca, f"m{i + 1}", ADDRESSES[i]) for i in range(self.size)
        ]
        cluster = {c.name: c.peer_url for c in configs}
        self.members = [EtcdMember(replace(c, initial_cluster=cluster)) for c in configs]
        self.client_tls = self.ca.write_pair(self.root / "client", "client", "test-client")
        for member in self.members:
            member.spawn()
        for member in self.members:
            member.wait_ready()

    @property
    def endpoints(self) -> list[str]:
        return [m.config.client_url for m in self.members]

    def gateway(self, timeout: float = 2.0) -> EtcdGateway:
        """A client of every member, with the test's client certificate (in a running loop)."""
        assert self.client_tls is not None
        return EtcdGateway(
            self.endpoints, ssl_context=self.client_tls.client_context(), timeout=timeout
        )

    def stop(self) -> None:
        for member in self.members:
            member.stop()


class EtcdProcess:
    """One plain-HTTP etcd member on 127.0.0.1 (a site store for tests that need no TLS), data
    under `root` (a temporary directory of its own, removed on stop, when not given)."""

    def __init__(self, root: Path | None = None) -> None:
        self.made_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="etcd-", dir="/tmp"))
        self.member = EtcdMember(member_config(self.root, None, "site", "127.0.0.1"))

    @property
    def client_url(self) -> str:
        return self.member.config.client_url

    def start(self) -> None:
        self.member.start()

    def stop(self) -> None:
        self.member.stop()
        if self.made_root:
            shutil.rmtree(self.root, ignore_errors=True)
