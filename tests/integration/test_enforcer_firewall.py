"""The outbound policy fails closed: rules in both families, put back when they vanish."""

from __future__ import annotations

import subprocess
import time

from enforcer.network.rules import chain_names
from enforcer.reconcile.instances import bridge_name
from tests.support.apps import app, sleeper
from tests.support.enforcer import EnforcerProc


def _rules(tool: str, chain: str) -> str:
    return subprocess.run([tool, "--wait", "-S", chain], capture_output=True, text=True).stdout


def _hooked(tool: str, parent: str, chain: str) -> bool:
    check = [tool, "--wait", "-C", parent, "-j", chain]
    return subprocess.run(check, capture_output=True).returncode == 0


def _enforced(tool: str, fwd: str, inp: str, bridge: str) -> bool:
    drop = f"-i {bridge}"
    return (
        _hooked(tool, "DOCKER-USER", fwd)
        and _hooked(tool, "INPUT", inp)
        and drop in _rules(tool, fwd)
        and drop in _rules(tool, inp)
    )


def _wait(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_outbound_rules_cover_ipv6_and_are_put_back_after_a_firewall_reload(
    enforcer: EnforcerProc, test_image: str
) -> None:
    enforcer.apply(app("walled", sleeper("s", test_image)))
    enforcer.wait_running("walled.s.0")
    fwd, inp = chain_names(f"{enforcer.host_id}:{enforcer.state_dir}")
    bridge = bridge_name(enforcer.host_id, "system", "walled")
    for tool in ("iptables", "ip6tables"):
        assert _wait(lambda t=tool: _enforced(t, fwd, inp, bridge), 10), (tool, _rules(tool, fwd))

    # a firewall reload: our chains flushed and unhooked, in both families
    for tool in ("iptables", "ip6tables"):
        for parent, chain in (("DOCKER-USER", fwd), ("INPUT", inp)):
            subprocess.run([tool, "--wait", "-D", parent, "-j", chain], check=True)
            subprocess.run([tool, "--wait", "-F", chain], check=True)
    assert not _enforced("iptables", fwd, inp, bridge)
    for tool in ("iptables", "ip6tables"):
        assert _wait(lambda t=tool: _enforced(t, fwd, inp, bridge), 12), (tool, _rules(tool, fwd))
    status = enforcer.cli("status")
    assert status.returncode == 0, status.stderr
    assert "enforced" in status.stdout and "not enforced" not in status.stdout, status.stdout
