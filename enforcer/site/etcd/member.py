"""The etcd member a controller host runs: its command line, the child process, its supervisor.

Each controller enforcer starts its own member (as K3s embeds its datastore): data under the
state directory, client and peer traffic on the host's advertised address (ports 7720 and
7721 by default), TLS for both with the site's CA. The member is restarted with backoff when
it dies and stopped by its pid on shutdown; it dies with the enforcer (PR_SET_PDEATHSIG) so a
crashed enforcer leaves no orphan holding the ports.

A second or third controller joins a running cluster with `add_member` (through the gateway
of a member already in it) and then starts its own member with `cluster_state="existing"` and
the `initial_cluster` that `add_member` returned.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ipaddress
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from enforcer.site.etcd.certs import TLSFiles
from enforcer.site.etcd.errors import EtcdError, Unavailable
from enforcer.site.etcd.gateway import EtcdGateway
from enforcer.site.etcd.records import Member

__all__ = [
    "CLIENT_PORT", "PEER_PORT", "Backoff", "EtcdMissing", "ManagedMember", "MemberConfig",
    "MemberConflict", "MemberFailed", "add_member", "etcd_binary",
]  # fmt: skip

log = logging.getLogger(__name__)

CLIENT_PORT = 7720
PEER_PORT = 7721
# etcd 3.4 warns of this on every gateway request made with a client certificate.
_NOISE = "ignoring common name in gRPC-gateway proxy request"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class EtcdMissing(RuntimeError):
    """The etcd server is not installed on this machine."""


class MemberFailed(RuntimeError):
    """The member could not be started (it exited, or never answered)."""


class MemberConflict(RuntimeError):
    """The cluster already has a member that stands in the way of the one being added."""


def etcd_binary(program: str = "etcd") -> str:
    """The etcd server's path; `EtcdMissing` naming the Debian package when it is absent."""
    path = shutil.which(program)
    if path is None:
        raise EtcdMissing(
            f"etcd is not installed ({program!r} is not on PATH): a controller host of a "
            "multi-host site needs it; install the Debian package etcd-server "
            "(apt-get install etcd-server)"
        )
    return path


def _url(scheme: str, address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class MemberConfig:
    """One managed member. `initial_cluster` maps member names to peer URLs and must include
    this member; empty means a cluster of this member alone. It matters only on the first
    start (an existing data directory keeps its cluster)."""

    name: str
    data_dir: Path
    advertise: str
    client_port: int = CLIENT_PORT
    peer_port: int = PEER_PORT
    initial_cluster: Mapping[str, str] = field(default_factory=dict)
    cluster_state: Literal["new", "existing"] = "new"
    tls: TLSFiles | None = None
    cluster_token: str = "edgeward-site"
    progress_notify_interval: str = "5s"
    auto_compaction: str = "1h"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"etcd member name {self.name!r} must be 1-63 letters, digits, '.', '_' or '-'"
            )
        try:
            ipaddress.ip_address(self.advertise)
        except ValueError:
            raise ValueError(
                f"[cluster] advertise {self.advertise!r} is not an IP address"
            ) from None
        for key, port in (("client-port", self.client_port), ("peer-port", self.peer_port)):
            if not 0 < port < 65536:
                raise ValueError(f"[cluster] {key} {port} is not a port number (1-65535)")
        if self.client_port == self.peer_port:
            raise ValueError(f"[cluster] client-port and peer-port are both {self.client_port}")
        if self.cluster_state not in ("new", "existing"):
            raise ValueError(f"cluster state {self.cluster_state!r} is not 'new' or 'existing'")
        if self.initial_cluster and self.initial_cluster.get(self.name) != self.peer_url:
            raise ValueError(
                f"the initial cluster {dict(self.initial_cluster)} does not name this member "
                f"{self.name}={self.peer_url}"
            )

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def client_url(self) -> str:
        return _url(self.scheme, self.advertise, self.client_port)

    @property
    def peer_url(self) -> str:
        return _url(self.scheme, self.advertise, self.peer_port)

    def command(self, binary: str) -> list[str]:
        """The member's command line."""
        cluster = self.initial_cluster or {self.name: self.peer_url}
        argv = [
            binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            "--initial-cluster=" + ",".join(f"{n}={u}" for n, u in sorted(cluster.items())),
            f"--initial-cluster-state={self.cluster_state}",
            f"--initial-cluster-token={self.cluster_token}",
            "--pre-vote=true",
            "--snapshot-count=10000",
            "--auto-compaction-mode=periodic",
            f"--auto-compaction-retention={self.auto_compaction}",
            f"--experimental-watch-progress-notify-interval={self.progress_notify_interval}",
            "--logger=zap",
            "--log-level=warn",
        ]
        if self.tls is not None:
            ca, cert, key = self.tls.ca, self.tls.cert, self.tls.key
            argv += [
                f"--trusted-ca-file={ca}",
                f"--cert-file={cert}",
                f"--key-file={key}",
                "--client-cert-auth=true",
                f"--peer-trusted-ca-file={ca}",
                f"--peer-cert-file={cert}",
                f"--peer-key-file={key}",
                "--peer-client-cert-auth=true",
                # Peers are known by their certificate from the site CA, not by the address
                # they connect from (a multi-homed host, or loopback, uses another one).
                "--experimental-peer-skip-client-san-verification=true",
            ]
        return argv

    def gateway(self, timeout: float = 2.0) -> EtcdGateway:
        """A client of this member alone (with the member's own certificate)."""
        context = self.tls.client_context() if self.tls else None
        return EtcdGateway([self.client_url], ssl_context=context, timeout=timeout)


@dataclass(frozen=True)
class Backoff:
    """Delays between restarts: `first`, times `factor` per quick death, at most `cap`; back to
    `first` once the member stayed up `healthy_after` seconds."""

    first: float = 0.2
    factor: float = 2.0
    cap: float = 10.0
    healthy_after: float = 30.0

    def next(self, previous: float | None, uptime: float) -> float:
        if previous is None or uptime >= self.healthy_after:
            return self.first
        return min(self.cap, previous * self.factor)


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ManagedMember:
    """The member as a supervised child process of this enforcer."""

    def __init__(
        self,
        config: MemberConfig,
        *,
        binary: str = "etcd",
        backoff: Backoff | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.config = config
        self.restarts = 0
        self._binary = binary
        self._backoff = backoff or Backoff()
        self._ready_timeout = ready_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        self._stopping = False
        self._relays: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        """The pid of the running etcd, None between a death and its restart."""
        if self._process is None or self._process.returncode is not None:
            return None
        return self._process.pid

    async def start(self) -> None:
        """Start etcd and wait until it answers; then supervise it. `EtcdMissing` without etcd,
        `MemberFailed` when it exits or does not answer within the ready timeout."""
        binary = etcd_binary(self._binary)
        self._stopping = False
        self.config.data_dir.parent.mkdir(parents=True, exist_ok=True)
        await self._spawn(binary)
        try:
            await self.wait_ready()
        except BaseException:
            await self._terminate(5.0)
            raise
        self._supervisor = asyncio.create_task(
            self._supervise(binary), name=f"etcd-member-{self.config.name}"
        )

    async def wait_ready(self) -> None:
        """Until the member answers a status request (which needs no quorum)."""
        deadline = time.monotonic() + self._ready_timeout
        last = "no answer yet"
        async with self.config.gateway(timeout=1.0) as gateway:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.returncode is not None:
                    raise MemberFailed(
                        f"etcd member {self.config.name} exited with status "
                        f"{self._process.returncode} before it answered: {self.last_output()}"
                    )
                try:
                    await gateway.status()
                    return
                except EtcdError as e:
                    last = str(e)
                await asyncio.sleep(0.1)
        raise MemberFailed(
            f"etcd member {self.config.name} did not answer at {self.config.client_url} within "
            f"{self._ready_timeout:g}s ({last}); its last output: {self.last_output()}"
        )

    def last_output(self) -> str:
        return " | ".join(self._tail) or "(nothing)"

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop supervising, then SIGTERM the member by its pid (SIGKILL after `timeout`)."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        await self._terminate(timeout)

    async def _terminate(self, timeout: float) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            log.warning("etcd member %s ignored SIGTERM; killing it", self.config.name)
            process.kill()
            await process.wait()
        for relay in list(self._relays):
            await relay

    async def _spawn(self, binary: str) -> None:
        data_dir = self.config.data_dir
        data_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(data_dir, 0o700)  # etcd refuses looser permissions
        self._process = await asyncio.create_subprocess_exec(
            *self.config.command(binary),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        self._started_at = time.monotonic()
        relay = asyncio.create_task(
            self._relay(self._process), name=f"etcd-member-{self.config.name}-log"
        )
        self._relays.add(relay)
        relay.add_done_callback(self._relays.discard)
        log.info("started etcd member %s (pid %d)", self.config.name, self._process.pid)

    async def _relay(self, process: asyncio.subprocess.Process) -> None:
        """etcd's log lines into ours, and the last few kept for error messages."""
        assert process.stderr is not None
        async for raw in process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line and _NOISE not in line:
                self._tail.append(line)
                log.info("etcd %s: %s", self.config.name, line)

    async def _supervise(self, binary: str) -> None:
        delay: float | None = None
        while not self._stopping:
            process = self._process
            assert process is not None
            code = await process.wait()
            if self._stopping:
                return
            delay = self._backoff.next(delay, time.monotonic() - self._started_at)
            log.warning(
                "etcd member %s (pid %d) exited with status %s; restarting in %.1fs: %s",
                self.config.name, process.pid, code, delay, self.last_output(),
            )  # fmt: skip
            await asyncio.sleep(delay)
            try:
                await self._spawn(binary)
            except OSError as e:
                log.error("etcd member %s could not be restarted: %s", self.config.name, e)
                continue
            self.restarts += 1


async def add_member(
    gateway: EtcdGateway, name: str, peer_url: str, *, wait: float = 20.0, learner: bool = False
) -> dict[str, str]:
    """Announce member `name` at `peer_url` to the running cluster `gateway` talks to; the
    `initial_cluster` the new member starts with (`cluster_state="existing"`).

    etcd refuses a new member while the cluster is not yet healthy (a member that joined less
    than 5 s ago, an election): that is retried for up to `wait` seconds, then `Unavailable`.
    Adding a member already announced with the same peer URL is allowed (a join that crashed
    before the member started); a name or peer URL taken by another member, or another member
    announced but never started, raise `MemberConflict`.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return await _add_member(gateway, name, peer_url, learner)
        except Unavailable as e:
            if time.monotonic() >= deadline:
                raise
            log.info("etcd will not add member %s yet (%s); retrying", name, e)
            await asyncio.sleep(0.5)


async def _add_member(
    gateway: EtcdGateway, name: str, peer_url: str, learner: bool
) -> dict[str, str]:
    members = await gateway.member_list()
    for member in members:
        if peer_url in member.peer_urls:
            if member.name not in ("", name):
                raise MemberConflict(
                    f"peer URL {peer_url} already belongs to etcd member {member.name}"
                )
            return _initial_cluster(members, name, member.id)
        if member.name == name:
            raise MemberConflict(
                f"an etcd member named {name} already exists at {', '.join(member.peer_urls)}"
            )
        if not member.started:
            raise MemberConflict(
                f"the etcd member at {', '.join(member.peer_urls)} was added but never started: "
                "start it, or remove it, before adding another"
            )
    new, members = await gateway.member_add([peer_url], learner=learner)
    return _initial_cluster(members, name, new.id)


def _initial_cluster(members: list[Member], name: str, new_id: int) -> dict[str, str]:
    cluster: dict[str, str] = {}
    for member in members:
        member_name = name if member.id == new_id else member.name
        cluster[member_name] = member.peer_urls[0]
    return cluster
