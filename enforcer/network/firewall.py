"""The iptables adapter of the outbound policy (the rules themselves: `enforcer.network.rules`).

Rules are loaded with `iptables-restore --noflush` (and `ip6tables-restore`), which replaces
our chains atomically and leaves every other chain alone. The policy fails closed in what it
reports: `enforced` is False, and `status` says why, whenever a family's rules could not be
loaded — no `iptables` on the machine, or an error — and `verify` (run every few seconds by the
reconciler) puts hooks and rules back when a firewall reload or `iptables -F` removed them.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Mapping

from enforcer.network.rules import Family, chain_names, hooks, missing, rules

log = logging.getLogger(__name__)


class Firewall:
    """`enforcer.reconcile.runtime.OutboundPolicy` over iptables and ip6tables."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._errors: dict[Family, str] = {}
        for family in Family:
            if shutil.which(family.restore) is None or shutil.which(family.value) is None:
                self._errors[family] = f"{family.value} not found"
        self._bridges: Mapping[str, frozenset[str]] | None = None
        self._applied: dict[Family, str] = {}
        self._hooked: set[Family] = set()
        self._lock = asyncio.Lock()

    # -- what health reports -------------------------------------------------------------
    @property
    def enforced(self) -> bool:
        """True when the rules of both families are in place as last computed."""
        return not self._errors

    @property
    def status(self) -> str:
        """ "enforced", or "not enforced: " and why, per family."""
        if not self._errors:
            return "enforced"
        return "not enforced: " + "; ".join(self._errors[f] for f in Family if f in self._errors)

    @property
    def error(self) -> str:
        return "" if self.enforced else self.status

    # -- OutboundPolicy ------------------------------------------------------------------
    async def apply(self, bridges: Mapping[str, frozenset[str]]) -> None:
        async with self._lock:
            self._bridges = dict(bridges)
            for family in Family:
                await self._apply(family)

    async def verify(self) -> None:
        """Check that hooks and rules are still there; put back what vanished."""
        async with self._lock:
            if self._bridges is None:
                return
            for family in Family:
                text = self._applied.get(family)
                if text is None:  # never loaded (or failed): try again
                    await self._apply(family)
                    continue
                try:
                    saved = await _run([family.save, "-t", "filter"])
                except OSError as exc:
                    self._fail(family, f"cannot read {family.value} rules: {exc}")
                    continue
                gone = missing(self.owner, text, saved)
                if gone:
                    log.warning("outbound rules vanished (%s); loading them again", "; ".join(gone))
                    self._applied.pop(family, None)
                    self._hooked.discard(family)
                    await self._apply(family)

    async def _apply(self, family: Family) -> None:
        if shutil.which(family.restore) is None or shutil.which(family.value) is None:
            self._fail(family, f"{family.value} not found")
            return
        assert self._bridges is not None
        text = rules(self.owner, self._bridges, family)
        if text == self._applied.get(family):
            return
        try:
            if family not in self._hooked:
                await self._hook(family)
                self._hooked.add(family)
            await _run([family.restore, "--noflush", "--wait"], text)
        except OSError as exc:
            self._fail(family, f"cannot program {family.value}: {exc}")
            return
        self._applied[family] = text
        self._errors.pop(family, None)

    def _fail(self, family: Family, why: str) -> None:
        if self._errors.get(family) != why:
            log.warning("outbound policy not enforced: %s", why)
        self._errors[family] = why
        self._applied.pop(family, None)
        self._hooked.discard(family)

    async def _hook(self, family: Family) -> None:
        for h in hooks(self.owner):
            await _run([family.value, "--wait", "-N", h.chain], check=False)
            try:
                await _run(h.check(family))
            except OSError:
                await _run(h.insert(family))

    async def remove(self) -> None:
        """Unhook and delete our chains (on purge of everything; not on normal shutdown)."""
        for family in Family:
            if shutil.which(family.value) is None:
                continue
            for h in hooks(self.owner):
                if h.chain not in chain_names(self.owner):
                    continue  # DOCKER-USER is shared: left in place
                await _run(h.delete(family), check=False)
                await _run([family.value, "--wait", "-F", h.chain], check=False)
                await _run([family.value, "--wait", "-X", h.chain], check=False)
        self._applied.clear()
        self._hooked.clear()


async def _run(cmd: list[str], stdin: str | None = None, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if check and proc.returncode != 0:
        raise OSError(f"{' '.join(cmd[:2])} failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")
