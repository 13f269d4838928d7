"""The outbound policy's rules (pure), and what the adapter reports without iptables."""

from __future__ import annotations

import asyncio

import pytest

from enforcer.network.firewall import Firewall
from enforcer.network.rules import Family, chain_names, hooks, missing, rules

OWNER = "host-a:/var/lib/edgeward"
FWD, INP = chain_names(OWNER)


def test_every_bridge_denies_new_outbound_connections_in_both_families() -> None:
    for family in Family:
        text = rules(OWNER, {"ew-b1": frozenset(), "ew-b2": frozenset()}, family)
        for bridge in ("ew-b1", "ew-b2"):
            assert f"-A {FWD} -i {bridge} ! -o {bridge} -m conntrack --ctstate NEW -j DROP" in text
            assert f"-A {INP} -i {bridge} -m conntrack --ctstate NEW -j DROP" in text
        assert text.startswith("*filter\n") and text.endswith("COMMIT\n")


def test_allowed_addresses_return_before_the_drop_each_in_its_own_family() -> None:
    bridges = {"ew-b1": frozenset({"10.0.0.5", "fd00::5"})}
    v4 = rules(OWNER, bridges, Family.IPV4).splitlines()
    v6 = rules(OWNER, bridges, Family.IPV6).splitlines()
    allow4 = f"-A {FWD} -i ew-b1 -s 10.0.0.5/32 -j RETURN"
    allow6 = f"-A {FWD} -i ew-b1 -s fd00::5/128 -j RETURN"
    drop = f"-A {FWD} -i ew-b1 ! -o ew-b1 -m conntrack --ctstate NEW -j DROP"
    assert v4.index(allow4) < v4.index(drop) and allow6 not in v4
    assert v6.index(allow6) < v6.index(drop) and allow4 not in v6


def test_chains_are_named_per_enforcer_and_fit_iptables() -> None:
    other = chain_names("host-b:/var/lib/edgeward")
    assert set(other).isdisjoint({FWD, INP})
    assert all(len(name) <= 28 for name in (FWD, INP))


def test_hooks_jump_from_docker_user_and_input() -> None:
    assert [(h.parent, h.chain) for h in hooks(OWNER)] == [
        ("FORWARD", "DOCKER-USER"),
        ("DOCKER-USER", FWD),
        ("INPUT", INP),
    ]
    assert hooks(OWNER)[1].insert(Family.IPV6)[:1] == ["ip6tables"]


def _saved(text: str, *, hooked: bool = True) -> str:
    """What iptables-save shows after loading `text` (options in an order of its own)."""
    lines = [":INPUT ACCEPT [0:0]", f":{FWD} - [0:0]", f":{INP} - [0:0]"]
    if hooked:
        lines += ["-A FORWARD -j DOCKER-USER", f"-A DOCKER-USER -j {FWD}", f"-A INPUT -j {INP}"]
    for line in text.splitlines():
        if line.startswith("-A "):
            words = line.split()
            lines.append(" ".join(words[:2] + words[4:6] + words[2:4] + words[6:]))
    return "\n".join(lines) + "\n"


MISSING = {
    "all in place": (True, True, []),
    "flushed chains": (True, False, [f"{FWD} holds 0 of its 2 rules", f"{INP} holds 0 of its 2"]),
    "unhooked": (False, True, ["FORWARD does not jump", "DOCKER-USER does not jump", "INPUT"]),
}


@pytest.mark.parametrize("case", MISSING.values(), ids=list(MISSING))
def test_vanished_hooks_and_rules_are_noticed(case: tuple[bool, bool, list[str]]) -> None:
    hooked, kept, expected = case
    text = rules(OWNER, {"ew-b1": frozenset({"10.0.0.5"})})
    saved = _saved(text if kept else "", hooked=hooked)
    gone = missing(OWNER, text, saved)
    assert len(gone) == len(expected), gone
    for found, want in zip(gone, expected, strict=True):
        assert found.startswith(want), gone


def test_without_iptables_the_policy_reports_itself_not_enforced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    fw = Firewall(OWNER)
    assert fw.enforced is False
    asyncio.run(fw.apply({"ew-b1": frozenset()}))
    asyncio.run(fw.verify())
    assert fw.enforced is False
    assert fw.status == "not enforced: iptables not found; ip6tables not found"
