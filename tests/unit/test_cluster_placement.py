"""The leader's placement: failover held back until a dead host must have fenced itself."""

from __future__ import annotations

from enforcer.schedule.hosts import HostState
from enforcer.shared.spec.parse import parse_application
from enforcer.site.cluster.placement import place
from tests.support import apps as spec
from tests.unit.test_scheduler import app, host, svc

APPS = {"a": app("a", svc("web", replicas=2), svc("agent", per_host=True))}
GRACE = 1.0


def test_replicas_spread_over_the_live_hosts_and_stay_put() -> None:
    hosts = [host("h1"), host("h2"), host("h3")]
    first = place(hosts, APPS, {}, {}, now=0.0, grace=GRACE)
    web = {i: h for i, h in first.instances.items() if ".web." in i}
    assert len(web) == 2 and len(set(web.values())) == 2
    assert {i for i in first.instances if ".agent." in i} == {
        "a.agent.h1", "a.agent.h2", "a.agent.h3"
    }  # fmt: skip
    again = place(hosts, APPS, first.instances, {}, now=5.0, grace=GRACE)
    assert again.instances == first.instances and again.recheck_at is None


def test_a_dead_hosts_instances_wait_for_the_fencing_moment_then_move() -> None:
    current = {"a.web.0": "h1", "a.web.1": "h2", "a.agent.h1": "h1", "a.agent.h2": "h2"}
    live = [host("h2"), host("h3")]
    held = place(live, APPS, current, {"h1": 10.0}, now=10.5, grace=GRACE)
    assert held.instances["a.web.0"] == "h1"  # not yet: h1 may still be stopping it
    assert held.held == ("a.web.0",) and held.recheck_at == 11.0
    assert "a.agent.h1" not in held.instances  # h1's own instance goes with it
    moved = place(live, APPS, current, {"h1": 10.0}, now=11.0, grace=GRACE)
    assert moved.instances["a.web.0"] == "h3"  # spread: h2 runs a.web.1
    assert moved.instances["a.web.1"] == "h2"  # the live host's instance never moved
    assert moved.held == () and moved.recheck_at is None


def test_a_host_seen_missing_for_the_first_time_counts_as_gone_now() -> None:
    current = {"a.web.0": "h1", "a.web.1": "h2"}
    decided = place([host("h2")], APPS, current, {}, now=3.0, grace=GRACE)
    assert decided.instances["a.web.0"] == "h1" and decided.recheck_at == 4.0


def test_what_no_live_host_can_take_is_pending_with_reasons() -> None:
    big = {"b": app("b", svc("db", memory=64 * 2**30))}
    decided = place([host("h1")], big, {}, {}, now=0.0, grace=GRACE)
    assert decided.instances == {}
    assert decided.pending.get("b.db.0")


def test_an_instance_whose_live_host_lost_its_device_moves_once_that_host_stopped_it() -> None:
    doc = spec.app("c", spec.sleeper("s", "img:1", placement={"devices": ["cam"]}))
    apps = {"c": parse_application(doc)}
    unplugged = HostState("h1", memory=1 << 30, cpus=1)
    other = HostState("h2", device_labels=frozenset({"cam"}), memory=1 << 30, cpus=1)
    hosts = [unplugged, other]
    running = place(hosts, apps, {"c.s.0": "h1"}, {}, 0.0, 1.0, {"h1": frozenset({"c.s.0"})})
    assert running.instances == {"c.s.0": "h1"} and running.held == ("c.s.0",)
    stopped = place(hosts, apps, {"c.s.0": "h1"}, {}, 0.0, 1.0, {"h1": frozenset()})
    assert stopped.instances == {"c.s.0": "h2"} and stopped.held == ()


def test_a_leaving_host_takes_nothing_and_each_instance_moves_once_it_stopped_there() -> None:
    hosts = [host("h1"), host("h2"), host("h3")]
    current = {"a.web.0": "h1", "a.web.1": "h2", "a.agent.h1": "h1", "a.agent.h2": "h2",
               "a.agent.h3": "h3"}  # fmt: skip
    leaving = frozenset({"h1"})
    running = place(hosts, APPS, current, {}, 0.0, GRACE, {"h1": frozenset({"a.web.0"})}, leaving)
    assert running.instances["a.web.0"] == "h1" and running.held == ("a.web.0",)
    assert "a.agent.h1" not in running.instances  # its own one-per-host instance goes
    stopped = place(hosts, APPS, current, {}, 0.0, GRACE, {"h1": frozenset()}, leaving)
    assert stopped.instances["a.web.0"] == "h3"  # spread: h2 runs a.web.1
    assert "h1" not in stopped.instances.values() and stopped.held == ()
