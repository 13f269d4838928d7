"""The outbound policy as iptables rules: pure computation, no process is run here.

Docker's `--internal` networks cannot publish ports and still let containers reach the host,
so `outbound: deny` is enforced with rules in chains of our own: new connections that enter
the host or leave the bridge of an application network are dropped, except from the addresses
of instances whose service says `outbound: allow`. Replies to inbound connections (published
ports) pass, and traffic between containers of the same application stays on the bridge.

The same policy is written for IPv4 (`iptables`) and IPv6 (`ip6tables`): a bridge without
IPv6 addresses of its own still forwards IPv6, so both families deny by default.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

FORWARD_PARENT = "DOCKER-USER"


class Family(enum.Enum):
    IPV4 = "iptables"
    IPV6 = "ip6tables"

    @property
    def restore(self) -> str:
        return f"{self.value}-restore"

    @property
    def save(self) -> str:
        return f"{self.value}-save"


@dataclass(frozen=True)
class Hook:
    """`parent` jumps to `chain` first (rule 1)."""

    parent: str
    chain: str

    def check(self, family: Family) -> list[str]:
        return [family.value, "--wait", "-C", self.parent, "-j", self.chain]

    def insert(self, family: Family) -> list[str]:
        return [family.value, "--wait", "-I", self.parent, "1", "-j", self.chain]

    def delete(self, family: Family) -> list[str]:
        return [family.value, "--wait", "-D", self.parent, "-j", self.chain]


def chain_names(owner: str) -> tuple[str, str]:
    """Chain names unique per enforcer (several run side by side in tests)."""
    digest = hashlib.sha1(owner.encode()).hexdigest()[:8]
    return f"EW-FWD-{digest}", f"EW-IN-{digest}"


def hooks(owner: str) -> tuple[Hook, ...]:
    """In order. Forwarded traffic is hooked from DOCKER-USER: Docker jumps there first and
    never rewrites it, while it inserts every new network's ACCEPT rules at the top of FORWARD
    (above anything hooked into FORWARD before)."""
    fwd, inp = chain_names(owner)
    return Hook("FORWARD", FORWARD_PARENT), Hook(FORWARD_PARENT, fwd), Hook("INPUT", inp)


def rules(owner: str, bridges: Mapping[str, frozenset[str]], family: Family = Family.IPV4) -> str:
    """iptables-restore input for the filter table: bridge name -> addresses allowed out
    (the addresses of the other family are left out)."""
    fwd, inp = chain_names(owner)
    bits = "/32" if family is Family.IPV4 else "/128"
    lines = ["*filter", f":{fwd} - [0:0]", f":{inp} - [0:0]"]
    for bridge in sorted(bridges):
        for ip in sorted(a for a in bridges[bridge] if _family(a) is family):
            lines.append(f"-A {fwd} -i {bridge} -s {ip}{bits} -j RETURN")
            lines.append(f"-A {inp} -i {bridge} -s {ip}{bits} -j RETURN")
        lines.append(f"-A {fwd} -i {bridge} ! -o {bridge} -m conntrack --ctstate NEW -j DROP")
        lines.append(f"-A {inp} -i {bridge} -m conntrack --ctstate NEW -j DROP")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def missing(owner: str, restore_text: str, saved: str) -> list[str]:
    """What of our rules `saved` (iptables-save output) lacks: hooks and rule counts, named.

    Rules are counted, not compared as text: iptables-save writes the options of a rule in
    an order of its own."""
    gone = []
    have = saved.splitlines()
    for h in hooks(owner):
        if f"-A {h.parent} -j {h.chain}" not in have:
            gone.append(f"{h.parent} does not jump to {h.chain}")
    for chain in chain_names(owner):
        want = sum(1 for line in restore_text.splitlines() if line.startswith(f"-A {chain} "))
        got = sum(1 for line in have if line.startswith(f"-A {chain} "))
        if got != want:
            gone.append(f"{chain} holds {got} of its {want} rules")
    return gone


def _family(address: str) -> Family:
    return Family.IPV4 if ipaddress.ip_address(address).version == 4 else Family.IPV6
