"""The WireGuard adapter of the site network (the decisions: `enforcer.network.sitenet`).

The interface is the kernel's (`ip link add NAME type wireguard`) where the kernel has it, else
a `wireguard-go` child process (Debian's `wireguard-go`) that the enforcer supervises: started
in the foreground, started again when it exits. `wg` (Debian's `wireguard-tools`) programs
either. The host's private key lives in its state directory (0600); the public key goes into
the site store. The interface holds the last address of the host's slice (so the host itself
is reachable on the site network) and a route to each peer's slice; iptables chains of its own
let forwarded traffic between the slice and the interface pass, and keep Docker from
masquerading traffic that stays inside the site's range.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from enforcer.network.sitenet import KEEPALIVE, Peer, tunnel_rules

log = logging.getLogger(__name__)

__all__ = ["SiteNetworkRefused", "WireGuard", "WireGuardError", "WireGuardMissing"]

# (table, parent chain, our chain's suffix): each parent jumps to ours first
HOOKS = (("filter", "DOCKER-USER", ""), ("filter", "INPUT", "-IN"), ("nat", "POSTROUTING", ""))
HOOK_CHECK = 3.0  # seconds between checks that our hooks are still first
PACKAGE_HINT = "install the Debian package wireguard-go (and wireguard-tools for wg)"


class WireGuardError(RuntimeError):
    """A WireGuard step failed; str() names the command and what it said."""


class SiteNetworkRefused(WireGuardError):
    """This host cannot join the site network (no WireGuard, an overlapping range): its
    application networks are its own alone until that changes."""


class WireGuardMissing(SiteNetworkRefused):
    """No WireGuard here: neither the kernel's nor wireguard-go (or no `wg`)."""


async def _run(*cmd: str, stdin: str | None = None, check: bool = True) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise WireGuardError(f"{cmd[0]} not found") from exc
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if check and proc.returncode != 0:
        text = err.decode(errors="replace").strip()
        raise WireGuardError(f"{' '.join(cmd[:4])} failed: {text}")
    return out.decode(errors="replace")


def chain_name(interface: str) -> str:
    return "EW-WG-" + hashlib.sha1(interface.encode()).hexdigest()[:8]


class WireGuard:
    def __init__(self, interface: str, key_dir: Path, port: int) -> None:
        self.interface = interface
        self.key_path = key_dir / "wireguard.key"
        self.port = port
        self.mode = ""  # "kernel" | "wireguard-go" once up
        self.since = 0.0  # unix time the interface came up
        self.public_key = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._rules = ""  # the tunnel's iptables rules as last loaded
        self._checked = 0.0  # when the hooks were last seen on top

    # -- keys ----------------------------------------------------------------------------
    async def keys(self) -> str:
        """This host's public key; the private key is made once (0600) and kept."""
        if shutil.which("wg") is None:
            raise WireGuardMissing(f"wg not found: {PACKAGE_HINT}")
        if not self.key_path.exists():
            self.key_path.parent.mkdir(parents=True, exist_ok=True)
            private = (await _run("wg", "genkey")).strip()
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(private + "\n")
        os.chmod(self.key_path, 0o600)
        private = self.key_path.read_text().strip()
        self.public_key = (await _run("wg", "pubkey", stdin=private + "\n")).strip()
        return self.public_key

    # -- the interface -------------------------------------------------------------------
    async def _exists(self) -> bool:
        return bool((await _run("ip", "link", "show", self.interface, check=False)).strip())

    async def up(self, address: ipaddress.IPv4Address) -> None:
        """The interface, up, with this host's key, port and `address` (idempotent)."""
        async with self._lock:
            await self._up(address)

    async def _up(self, address: ipaddress.IPv4Address) -> None:
        if not self.public_key:
            await self.keys()
        if await self._exists() and not self.mode:
            # left by a previous run (a kernel interface, or a wireguard-go that outlived it)
            if (await _run("wg", "show", self.interface, check=False)).strip():
                userspace = Path(f"/var/run/wireguard/{self.interface}.sock").exists()
                self.mode = "wireguard-go" if userspace else "kernel"  # (left by a killed run)
            else:
                await _run("ip", "link", "del", self.interface, check=False)
        if not await self._exists():
            await self._create()
        await _run("wg", "set", self.interface, "private-key", str(self.key_path),
                   "listen-port", str(self.port))  # fmt: skip
        await _run("ip", "address", "replace", f"{address}/32", "dev", self.interface)
        await _run("ip", "link", "set", self.interface, "up")
        with contextlib.suppress(OSError):  # forwarding between the bridges and the tunnel
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        self.since = self.since or time.time()

    async def _create(self) -> None:
        await _run("ip", "link", "add", self.interface, "type", "wireguard", check=False)
        if await self._exists():
            self.mode = "kernel"
            return
        exe = shutil.which("wireguard-go")
        if exe is None:
            raise WireGuardMissing(
                f"no WireGuard in this kernel and no wireguard-go: {PACKAGE_HINT}; "
                "the site runs without its site network until then"
            )
        env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error")
        self._proc = await asyncio.create_subprocess_exec(
            exe, "-f", self.interface,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                raise WireGuardError(f"wireguard-go exited ({self._proc.returncode})")
            if (await _run("wg", "show", self.interface, check=False)).strip():
                self.mode = "wireguard-go"
                log.info("site network: %s runs on wireguard-go (pid %d)", self.interface,
                         self._proc.pid)  # fmt: skip
                return
            await asyncio.sleep(0.05)
        raise WireGuardError(f"wireguard-go did not bring {self.interface} up within 10 s")

    @property
    def process_gone(self) -> bool:
        """wireguard-go was ours and has exited (the next `up` starts it again)."""
        return self._proc is not None and self._proc.returncode is not None

    async def down(self) -> None:
        """Remove the interface, its chains and our wireguard-go (when the host leaves)."""
        async with self._lock:
            await self._unhook()
            await _run("ip", "link", "del", self.interface, check=False)
            if self._proc is not None and self._proc.returncode is None:
                self._proc.terminate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._proc.wait(), 5)
            self._proc = None
            self.mode = ""
            self.since = 0.0

    async def close(self) -> None:
        """On shutdown: the interface and the tunnels stay (containers keep running);
        a wireguard-go of ours goes with us, and the next start makes it again."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 5)

    # -- peers and routes ----------------------------------------------------------------
    async def set_peers(self, peers: Sequence[Peer]) -> None:
        """Exactly these peers, each with a route to its slice through the interface."""
        async with self._lock:
            have = await self._peer_keys()
            want = {p.public_key: p for p in peers}
            for key in have - set(want):
                await _run("wg", "set", self.interface, "peer", key, "remove")
            for p in peers:
                await _run("wg", "set", self.interface, "peer", p.public_key,
                           "endpoint", p.endpoint, "allowed-ips", str(p.slice),
                           "persistent-keepalive", str(KEEPALIVE))  # fmt: skip
            routes = await _run("ip", "-4", "route", "show", "dev", self.interface)
            present = {line.split()[0] for line in routes.splitlines() if line.strip()}
            wanted = {str(p.slice) for p in peers}
            for net in sorted(present - wanted):
                await _run("ip", "route", "del", net, "dev", self.interface, check=False)
            for net in sorted(wanted):
                await _run("ip", "route", "replace", net, "dev", self.interface)

    async def _peer_keys(self) -> set[str]:
        dump = await _run("wg", "show", self.interface, "peers")
        return {line.strip() for line in dump.splitlines() if line.strip()}

    async def handshakes(self) -> dict[str, float]:
        """Public key -> unix time of its latest handshake (0: none yet)."""
        out = await _run("wg", "show", self.interface, "latest-handshakes", check=False)
        found = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                found[parts[0]] = float(parts[1])
        return found

    # -- iptables ------------------------------------------------------------------------
    async def allow(
        self,
        own: ipaddress.IPv4Network,
        site: ipaddress.IPv4Network,
        pairs: Iterable[tuple[str, str]] = (),
    ) -> None:
        """The tunnel's rules (`sitenet.tunnel_rules`: between the tunnel and this host's
        slice, only networks of one application; `pairs`: (remote, local) subnets), with their
        hooks put (back) first: Docker inserts its own rules at the top."""
        chain = chain_name(self.interface)
        text = tunnel_rules(chain, self.interface, own, site, pairs)
        if text == self._rules and time.monotonic() < self._checked + HOOK_CHECK:
            return
        self._checked = time.monotonic()
        if text == self._rules and await self._hooked(chain):
            return
        async with self._lock:
            await _run("iptables-restore", "--noflush", "--wait", stdin=text)
            self._rules = text
            await _run("iptables", "--wait", "-N", "DOCKER-USER", check=False)
            for table, parent, own_chain in HOOKS:
                target = chain + own_chain
                if not await self._first(table, parent, target):
                    await _run("iptables", "--wait", "-t", table, "-D", parent, "-j", target,
                               check=False)  # fmt: skip
                    await _run("iptables", "--wait", "-t", table, "-I", parent, "1", "-j", target)

    async def _first(self, table: str, parent: str, target: str) -> bool:
        rules = await _run("iptables", "--wait", "-t", table, "-S", parent)
        return [r for r in rules.splitlines() if r.startswith("-A ")][:1] == [
            f"-A {parent} -j {target}"
        ]

    async def _hooked(self, chain: str) -> bool:
        for table, parent, own_chain in HOOKS:
            if not await self._first(table, parent, chain + own_chain):
                return False
        return True

    async def _unhook(self) -> None:
        self._rules = ""
        for table, parent, own_chain in HOOKS:
            chain = chain_name(self.interface) + own_chain
            await _run("iptables", "--wait", "-t", table, "-D", parent, "-j", chain, check=False)
            await _run("iptables", "--wait", "-t", table, "-F", chain, check=False)
            await _run("iptables", "--wait", "-t", table, "-X", chain, check=False)
