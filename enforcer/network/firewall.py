"""Outbound policy for application networks, as iptables rules in chains of our own.

Docker's `--internal` networks cannot publish ports and still let containers reach the host,
so `outbound: deny` is enforced here instead: new connections that enter the host or leave the
bridge of an application network are dropped, except from the addresses of instances whose
service says `outbound: allow`. Replies to inbound connections (published ports) pass, and
traffic between containers of the same application stays on the bridge.

The rule text is computed by a pure function and loaded with `iptables-restore --noflush`,
which replaces our chains atomically and leaves every other chain alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from collections.abc import Mapping

log = logging.getLogger(__name__)


FORWARD_PARENT = "DOCKER-USER"


def chain_names(owner: str) -> tuple[str, str]:
    """Chain names unique per enforcer (several run side by side in tests)."""
    digest = hashlib.sha1(owner.encode()).hexdigest()[:8]
    return f"EW-FWD-{digest}", f"EW-IN-{digest}"


def rules(owner: str, bridges: Mapping[str, frozenset[str]]) -> str:
    """iptables-restore input for the filter table: bridge name -> addresses allowed out."""
    fwd, inp = chain_names(owner)
    lines = ["*filter", f":{fwd} - [0:0]", f":{inp} - [0:0]"]
    for bridge in sorted(bridges):
        for ip in sorted(bridges[bridge]):
            lines.append(f"-A {fwd} -i {bridge} -s {ip}/32 -j RETURN")
            lines.append(f"-A {inp} -i {bridge} -s {ip}/32 -j RETURN")
        lines.append(f"-A {fwd} -i {bridge} ! -o {bridge} -m conntrack --ctstate NEW -j DROP")
        lines.append(f"-A {inp} -i {bridge} -m conntrack --ctstate NEW -j DROP")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


class Firewall:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.available = shutil.which("iptables-restore") is not None
        self.error = "" if self.available else "iptables-restore not found"
        self._applied: str | None = None
        self._hooked = False  # Docker never rewrites DOCKER-USER or INPUT: hook once
        self._lock = asyncio.Lock()

    async def apply(self, bridges: Mapping[str, frozenset[str]]) -> None:
        if not self.available:
            return
        text = rules(self.owner, bridges)
        async with self._lock:
            if text == self._applied:
                return
            try:
                if not self._hooked:
                    await self._hook()
                    self._hooked = True
                await _run(["iptables-restore", "--noflush", "--wait"], text)
            except OSError as exc:
                self.error = f"cannot program iptables: {exc}"
                log.warning("outbound policy not enforced: %s", self.error)
                return
            self._applied = text
            self.error = ""

    async def _hook(self) -> None:
        fwd, inp = chain_names(self.owner)
        # Forwarded traffic is hooked from DOCKER-USER: Docker jumps there first and never
        # rewrites it, while it inserts every new network's ACCEPT rules at the top of FORWARD
        # (above anything hooked into FORWARD before).
        await _run(["iptables", "--wait", "-N", FORWARD_PARENT], check=False)
        try:
            await _run(["iptables", "--wait", "-C", "FORWARD", "-j", FORWARD_PARENT])
        except OSError:
            await _run(["iptables", "--wait", "-I", "FORWARD", "1", "-j", FORWARD_PARENT])
        for parent, chain in ((FORWARD_PARENT, fwd), ("INPUT", inp)):
            await _run(["iptables", "--wait", "-N", chain], check=False)
            try:
                await _run(["iptables", "--wait", "-C", parent, "-j", chain])
            except OSError:
                await _run(["iptables", "--wait", "-I", parent, "1", "-j", chain])

    async def remove(self) -> None:
        """Unhook and delete our chains (on purge of everything; not on normal shutdown)."""
        if not self.available:
            return
        fwd, inp = chain_names(self.owner)
        for parent, chain in ((FORWARD_PARENT, fwd), ("INPUT", inp)):
            await _run(["iptables", "--wait", "-D", parent, "-j", chain], check=False)
            await _run(["iptables", "--wait", "-F", chain], check=False)
            await _run(["iptables", "--wait", "-X", chain], check=False)
        self._applied = None
        self._hooked = False


async def _run(cmd: list[str], stdin: str | None = None, check: bool = True) -> None:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if check and proc.returncode != 0:
        raise OSError(f"{' '.join(cmd[:2])} failed: {err.decode(errors='replace').strip()}")
