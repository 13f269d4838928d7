"""The scheduler: filter by labels, devices, GPUs and resources; spread; preempt; stay put."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from enforcer.devices.inventory import Gpu, Inventory, inventory_from_properties
from enforcer.devices.rules import parse_rules
from enforcer.schedule.hosts import HostInfo
from enforcer.schedule.scheduler import HostState, Schedule, demands, host_state, schedule
from enforcer.shared.spec.model import (
    Application,
    Container,
    Mode,
    Placement,
    Priority,
    Resources,
    Service,
)

GI = 1024**3
MI = 1024**2
LOW, NORMAL, HIGH, CRITICAL = Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL


def host(
    id: str,
    *,
    cpus: float = 4.0,
    memory: int = 8 * GI,
    gpus: int = 0,
    devices: tuple[str, ...] = (),
    defined: tuple[str, ...] = (),
    **labels: str,
) -> HostState:
    return HostState(
        id=id,
        labels=tuple(sorted((k.replace("_", "-"), v) for k, v in labels.items())),
        device_labels=frozenset(devices),
        gpus=gpus,
        cpus=cpus,
        memory=memory,
        defined_device_labels=frozenset(defined),
    )


def svc(
    name: str,
    *,
    replicas: int = 1,
    priority: Priority = NORMAL,
    where: str = "",
    devices: tuple[str, ...] = (),
    gpus: int = 0,
    cpus: float = 0.0,
    memory: int = 0,
    per_host: bool = False,
) -> Service:
    return Service(
        name=name,
        containers=(Container("main", "registry.example:5000/img:1"),),
        mode=Mode.ONE_PER_MATCHING_HOST if per_host else Mode.REPLICATED,
        replicas=replicas,
        priority=priority,
        placement=Placement(where, devices, gpus),
        resources=Resources(cpus, memory),
    )


def app(name: str, *services: Service, tenant: str = "system") -> Application:
    return Application(name, "1.0", services, tenant)


def run(
    hosts: list[HostState], *services: Service, current: dict[str, str] | None = None
) -> Schedule:
    return schedule(hosts, [app("a", *services)], current or {})


def per_host(result: Schedule) -> dict[str, int]:
    return dict(Counter(result.assignments.values()))


# -- filtering: labels, devices, GPUs, resources ----------------------------------------------

LINE = [host("h1", zone="line-1"), host("h2", zone="line-2", maintenance="yes"), host("h3")]


@pytest.mark.parametrize(
    ("expression", "placed_on"),
    [
        ("", {"h1", "h2", "h3"}),
        ("zone = line-1", {"h1"}),
        ("zone", {"h1", "h2"}),
        ("zone != line-1", {"h2", "h3"}),
        ("zone in (line-1, line-2) and not maintenance", {"h1"}),
        ("not zone", {"h3"}),
        ("zone = line-9", set()),
        ("system/hostname = h1 or zone = line-2", {"h2"}),
    ],
)
def test_host_labels_filter_the_hosts(expression: str, placed_on: set[str]) -> None:
    result = run(LINE, svc("s", replicas=3, where=expression))
    assert set(result.assignments.values()) == placed_on
    if not placed_on:
        assert result.pending["a.s.0"] == tuple(
            f'{h}: labels do not match "{expression}"' for h in ("h1", "h2", "h3")
        )


@pytest.mark.parametrize(
    ("hosts", "service", "expected"),
    [
        (
            [host("host-a"), host("host-b", devices=("camera",))],
            svc("s", devices=("camera",)),
            {"a.s.0": "host-b"},
        ),
        (
            [host("host-a", devices=("camera",)), host("host-b", devices=("camera", "gps"))],
            svc("s", devices=("camera", "gps")),
            {"a.s.0": "host-b"},
        ),
        (
            [host("host-a", gpus=1), host("host-b", gpus=2)],
            svc("s", gpus=2),
            {"a.s.0": "host-b"},
        ),
        (
            [host("host-a", cpus=1), host("host-b", cpus=2)],
            svc("s", cpus=1.5),
            {"a.s.0": "host-b"},
        ),
        (
            [host("host-a", memory=GI), host("host-b", memory=2 * GI)],
            svc("s", memory=1536 * MI),
            {"a.s.0": "host-b"},
        ),
    ],
    ids=["device", "two-devices", "gpus", "cpus", "memory"],
)
def test_only_hosts_that_have_what_an_instance_needs_take_it(
    hosts: list[HostState], service: Service, expected: dict[str, str]
) -> None:
    assert run(hosts, service).assignments == expected


@pytest.mark.parametrize(
    ("hosts", "service", "reasons"),
    [
        (
            [host("host-a"), host("host-b", zone="line-2")],
            svc("s", where="zone = line-1"),
            ('host-a: labels do not match "zone = line-1"',
             'host-b: labels do not match "zone = line-1"'),
        ),
        (
            [host("host-a", devices=("gps",))],
            svc("s", devices=("camera",)),
            ("host-a: no device labelled camera",),
        ),
        (
            [host("host-a", gpus=1)],
            svc("s", gpus=2),
            ("host-a: needs 2 GPUs, has 1 in total",),
        ),
        (
            [host("host-a", cpus=2)],
            svc("s", cpus=3),
            ("host-a: needs 3 CPUs, has 2 in total",),
        ),
        (
            [host("host-a", memory=256 * MI)],
            svc("s", memory=512 * MI),
            ("host-a: needs 512Mi memory, has 256Mi in total",),
        ),
        (
            [host("host-a", devices=("scanner",), defined=("camera",))],
            svc("s", devices=("camera",)),
            ("host-a: no device labelled camera",),
        ),
        (
            [host("host-a", defined=("camera",))],
            svc("s", devices=("scanner",)),
            ("host-a: no device labelled scanner (no device rule defines it)",),
        ),
        ([], svc("s"), ("no hosts in the site",)),
    ],
    ids=["labels", "device", "gpus", "cpus", "memory", "device-defined", "device-undefined",
         "no-hosts"],
)  # fmt: skip
def test_an_instance_that_fits_nowhere_says_why_per_host(
    hosts: list[HostState], service: Service, reasons: tuple[str, ...]
) -> None:
    result = run(hosts, service)
    assert result.assignments == {}
    assert result.pending == {"a.s.0": reasons}


@pytest.mark.parametrize(
    ("hosts", "services", "pending"),
    [
        (
            [host("host-a", gpus=2), host("host-b", gpus=1)],
            [svc("first", gpus=1), svc("second", gpus=2)],
            {"a.second.0": ("host-a: needs 2 GPUs, has 1 free",
                            "host-b: needs 2 GPUs, has 1 in total")},
        ),
        (
            [host("host-a", gpus=1)],
            [svc("s", gpus=1, replicas=2)],
            {"a.s.1": ("host-a: needs 1 GPU, has 0 free",)},
        ),
        (
            [host("host-a", memory=612 * MI)],
            [svc("s", memory=512 * MI, replicas=2)],
            {"a.s.1": ("host-a: needs 512Mi memory, 100Mi free",)},
        ),
        (
            [host("host-a", cpus=1)],
            [svc("s", cpus=0.75, replicas=2)],
            {"a.s.1": ("host-a: needs 0.75 CPUs, 0.25 free",)},
        ),
        (
            [host("host-a", cpus=2)],
            [svc("s", cpus=1, replicas=3)],
            {"a.s.2": ("host-a: needs 1 CPU, 0 free",)},
        ),
        (
            [host("host-a", memory=GI + 1000)],
            [svc("s", memory=GI // 2 + 1000, replicas=2)],
            {"a.s.1": ("host-a: needs 512.001Mi memory, 512Mi free",)},
        ),
        (
            [host("host-a", memory=3 * GI // 2)],
            [svc("s", memory=GI, replicas=2)],
            {"a.s.1": ("host-a: needs 1Gi memory, 512Mi free",)},
        ),
        (
            [host("host-a", memory=GI + MI + 1)],
            [svc("s", memory=GI // 2 + 1, replicas=3)],
            {"a.s.2": ("host-a: needs 536870913 memory, 1023.999Ki free",)},
        ),
    ],
    ids=["gpus-free-and-total", "gpus-none-free", "memory", "fractional-cpus", "one-cpu",
         "uneven-memory", "memory-units", "memory-in-bytes"],
)  # fmt: skip
def test_what_is_still_free_is_reported_when_others_use_the_rest(
    hosts: list[HostState], services: list[Service], pending: dict[str, tuple[str, ...]]
) -> None:
    assert run(hosts, *services).pending == pending


def test_capacity_is_never_exceeded_and_fractional_cpus_add_up_exactly() -> None:
    result = run([host("h", cpus=1)], svc("s", cpus=0.1, replicas=11))
    assert len(result.assignments) == 10
    assert result.pending == {"a.s.10": ("h: needs 0.1 CPUs, 0 free",)}


# -- ranking: spread and least allocation ------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "replicas", "counts"),
    [
        (1, 5, [5]),
        (2, 4, [2, 2]),
        (3, 3, [1, 1, 1]),
        (3, 7, [3, 2, 2]),
        (4, 2, [1, 1, 0, 0]),
    ],
)
def test_replicas_spread_over_hosts(hosts: int, replicas: int, counts: list[int]) -> None:
    result = run([host(f"h{i}") for i in range(hosts)], svc("s", replicas=replicas))
    assert [per_host(result).get(f"h{i}", 0) for i in range(hosts)] == counts


def test_instances_of_different_services_go_to_the_least_allocated_host() -> None:
    hosts = [host("big", cpus=8, memory=16 * GI), host("small", cpus=2, memory=4 * GI)]
    result = run(hosts, *(svc(f"s{i}", cpus=1, memory=GI) for i in range(5)))
    assert per_host(result) == {"big": 4, "small": 1}


def test_spread_wins_over_allocation() -> None:
    hosts = [host("big", cpus=64, memory=64 * GI), host("small", cpus=2, memory=2 * GI)]
    result = run(hosts, svc("s", replicas=2, cpus=1, memory=GI))
    assert per_host(result) == {"big": 1, "small": 1}


def test_running_load_counts_for_least_allocation() -> None:
    hosts = [host("h1"), host("h2")]
    current = {"a.busy.0": "h1"}
    result = run(hosts, svc("busy", cpus=3), svc("new", cpus=1), current=current)
    assert result.assignments == {"a.busy.0": "h1", "a.new.0": "h2"}


# -- modes and naming --------------------------------------------------------------------------


def test_replicated_instances_are_numbered_from_zero() -> None:
    result = run([host("h")], svc("web", replicas=3))
    assert list(result.assignments) == ["a.web.0", "a.web.1", "a.web.2"]


def test_one_per_matching_host_runs_on_each_qualifying_host() -> None:
    hosts = [
        host("h1", zone="line-1", devices=("camera",)),
        host("h2", zone="line-1"),
        host("h3", zone="line-2", devices=("camera",)),
        host("h4", zone="line-1", devices=("camera",), gpus=1),
    ]
    result = run(hosts, svc("agent", per_host=True, where="zone = line-1", devices=("camera",)))
    assert result.assignments == {"a.agent.h1": "h1", "a.agent.h4": "h4"}
    gpu = run(hosts, svc("gpu", per_host=True, gpus=1))
    assert gpu.assignments == {"a.gpu.h4": "h4"}


def test_one_per_matching_host_that_does_not_fit_is_pending_with_its_host_reason() -> None:
    hosts = [host("h1", memory=GI), host("h2", memory=4 * GI)]
    result = run(hosts, svc("agent", per_host=True, memory=2 * GI))
    assert result.assignments == {"a.agent.h2": "h2"}
    assert result.pending == {"a.agent.h1": ("h1: needs 2Gi memory, has 1Gi in total",)}


def test_one_per_matching_host_matching_no_host_warns() -> None:
    result = run([host("h1")], svc("agent", per_host=True, where="zone = x"))
    assert result.assignments == {} and result.pending == {}
    assert result.warnings == ("a.agent: no host qualifies for one-per-matching-host",)


def test_demands_expand_replicas_and_hosts_in_scheduling_order() -> None:
    apps = [
        app("b", svc("x", replicas=11)),
        app("a", svc("agent", per_host=True), svc("db", priority=CRITICAL), tenant="acme"),
    ]
    found = demands(apps, [host("h2"), host("h1")])
    ids = [d.instance_id for d in found]
    assert ids[:3] == ["a.db.0", "a.agent.h1", "a.agent.h2"]
    assert ids[3:] == [f"b.x.{n}" for n in range(11)]  # 10 after 9
    assert found[0].tenant == "acme" and found[0].priority is CRITICAL
    assert found[1].host == "h1" and found[1].ordinal == 0 and found[4].ordinal == 1


def test_the_schedule_looks_demands_up_by_instance_id() -> None:
    result = run([host("h1")], svc("web", replicas=2, cpus=0.5))
    assert result.demand("a.web.1").resources.cpus == 0.5
    assert result.demand("a.web.1").ordinal == 1
    assert result.on_host("h1") == ["a.web.0", "a.web.1"]
    with pytest.raises(KeyError):
        result.demand("a.web.2")


# -- preemption ------------------------------------------------------------------------------


def full(*priorities: Priority) -> tuple[list[HostState], list[Service], dict[str, str]]:
    """One host of 2 CPUs, filled by one 1-CPU instance of each priority given."""
    services = [svc(f"{p.label}{i}", priority=p, cpus=1) for i, p in enumerate(priorities)]
    current = {f"a.{s.name}.0": "h" for s in services}
    return [host("h", cpus=2)], services, current


@pytest.mark.parametrize(
    ("running", "newcomer", "evicted"),
    [
        ((LOW, LOW), CRITICAL, ("a.low1.0",)),
        ((LOW, NORMAL), HIGH, ("a.low0.0",)),
        ((NORMAL, LOW), CRITICAL, ("a.low1.0",)),
        ((HIGH, NORMAL), CRITICAL, ("a.normal1.0",)),
        ((NORMAL, NORMAL), HIGH, ("a.normal1.0",)),
        ((HIGH, HIGH), HIGH, ()),
        ((CRITICAL, CRITICAL), CRITICAL, ()),
        ((LOW, LOW), NORMAL, ()),
        ((LOW, LOW), LOW, ()),
    ],
)
def test_only_critical_and_high_preempt_and_only_strictly_lower_lowest_first(
    running: tuple[Priority, ...], newcomer: Priority, evicted: tuple[str, ...]
) -> None:
    hosts, services, current = full(*running)
    result = run(hosts, *services, svc("new", priority=newcomer, cpus=1), current=current)
    assert result.evicted == evicted
    if evicted:
        assert result.assignments["a.new.0"] == "h"
        assert result.pending == {evicted[0]: ("h: preempted by a.new.0",)}
    else:
        assert result.pending == {"a.new.0": ("h: needs 1 CPU, 0 free",)}
        assert result.assignments == current


def test_preemption_evicts_the_fewest_instances() -> None:
    hosts = [host("h", cpus=4)]
    services = [svc("small", replicas=2, cpus=1, priority=LOW), svc("big", cpus=2, priority=LOW)]
    current = {"a.small.0": "h", "a.small.1": "h", "a.big.0": "h"}
    result = run(hosts, *services, svc("new", cpus=2, priority=HIGH), current=current)
    assert result.evicted == ("a.big.0",)


def test_preemption_prefers_the_host_whose_victims_have_the_lowest_priority() -> None:
    hosts = [host("h1", cpus=1), host("h2", cpus=1)]
    current = {"a.normal.0": "h1", "a.low.0": "h2"}
    services = [svc("normal", cpus=1), svc("low", cpus=1, priority=LOW)]
    result = run(hosts, *services, svc("new", cpus=1, priority=CRITICAL), current=current)
    assert result.assignments["a.new.0"] == "h2"
    assert result.evicted == ("a.low.0",)


def test_an_evicted_instance_moves_to_another_host_when_it_fits_there() -> None:
    hosts = [host("h1", cpus=2, gpus=1), host("h2", cpus=2)]
    current = {"a.low.0": "h1"}
    services = [svc("low", cpus=1, gpus=1, priority=LOW), svc("cheap", cpus=1, priority=LOW)]
    result = run(
        hosts, *services, svc("new", gpus=1, priority=HIGH), current={**current, "a.cheap.0": "h1"}
    )
    assert result.assignments["a.new.0"] == "h1"
    assert result.evicted == ("a.low.0",)
    assert result.pending == {
        "a.low.0": ("h1: preempted by a.new.0", "h2: needs 1 GPU, has 0 in total")
    }
    moved = run(
        hosts,
        svc("low", cpus=1, priority=LOW),
        svc("new", cpus=2, priority=HIGH, where="system/only = h1 or not zone"),
        current={"a.low.0": "h1", "a.new.0": "h2"},
    )
    assert moved.evicted == ()  # nothing to preempt: "new" keeps its host
    hosts3 = [host("h1", cpus=2), host("h2", cpus=2, zone="z")]
    moved = run(
        hosts3,
        svc("low", cpus=1, priority=LOW),
        svc("filler", cpus=1, priority=LOW, where="not zone"),
        svc("new", cpus=2, priority=HIGH, where="not zone"),
        current={"a.low.0": "h1", "a.filler.0": "h1"},
    )
    assert moved.assignments["a.new.0"] == "h1"
    assert moved.evicted == ("a.filler.0", "a.low.0")
    assert moved.assignments["a.low.0"] == "h2"  # re-placed where it fits
    assert moved.pending == {
        "a.filler.0": ("h1: preempted by a.new.0", 'h2: labels do not match "not zone"')
    }


def test_preemption_only_evicts_instances_that_free_what_is_missing() -> None:
    hosts = [host("h", cpus=4, gpus=1)]
    services = [svc("web", replicas=2, cpus=1, priority=LOW), svc("gpu", gpus=1, priority=NORMAL)]
    current = {"a.web.0": "h", "a.web.1": "h", "a.gpu.0": "h"}
    result = run(hosts, *services, svc("new", gpus=1, priority=CRITICAL), current=current)
    assert result.evicted == ("a.gpu.0",)  # the LOW web instances hold no GPU
    assert result.pending == {"a.gpu.0": ("h: preempted by a.new.0",)}


def test_nothing_is_evicted_when_evicting_everything_lower_would_not_be_enough() -> None:
    hosts = [host("h", cpus=2)]
    current = {"a.low.0": "h", "a.high.0": "h"}
    services = [svc("low", cpus=1, priority=LOW), svc("high", cpus=1, priority=HIGH)]
    result = run(hosts, *services, svc("new", cpus=2, priority=HIGH), current=current)
    assert result.evicted == ()
    assert result.pending == {"a.new.0": ("h: needs 2 CPUs, 0 free",)}


def test_a_preempted_high_instance_may_preempt_a_lower_one_elsewhere() -> None:
    hosts = [host("h1", cpus=1, zone="a"), host("h2", cpus=1)]
    current = {"a.high.0": "h1", "a.low.0": "h2"}
    result = run(
        hosts,
        svc("high", cpus=1, priority=HIGH),
        svc("low", cpus=1, priority=LOW),
        svc("crit", cpus=1, priority=CRITICAL, where="zone = a"),
        current=current,
    )
    assert result.assignments == {"a.crit.0": "h1", "a.high.0": "h2"}
    assert result.evicted == ("a.high.0", "a.low.0")
    assert result.pending == {"a.low.0": ("h1: needs 1 CPU, 0 free", "h2: preempted by a.high.0")}


def test_higher_priority_instances_are_placed_first_when_capacity_is_short() -> None:
    result = run(
        [host("h", cpus=2)],
        svc("low", cpus=1, priority=LOW),
        svc("normal", cpus=1),
        svc("critical", cpus=1, priority=CRITICAL),
    )
    assert set(result.assignments) == {"a.critical.0", "a.normal.0"}
    assert result.evicted == ()
    assert result.pending == {"a.low.0": ("h: needs 1 CPU, 0 free",)}


def test_when_a_host_shrinks_the_lower_priority_instances_leave_first() -> None:
    current = {"a.low.0": "h", "a.high.0": "h"}
    result = run(
        [host("h", cpus=1)],
        svc("low", cpus=1, priority=LOW),
        svc("high", cpus=1, priority=HIGH),
        current=current,
    )
    assert result.assignments == {"a.high.0": "h"}
    assert result.pending == {"a.low.0": ("h: needs 1 CPU, 0 free",)}


# -- stability -------------------------------------------------------------------------------


def test_a_new_host_does_not_move_running_instances() -> None:
    hosts = [host("h1"), host("h2")]
    services = [svc("web", replicas=4), svc("db", cpus=1), svc("cam", devices=("camera",))]
    hosts[0] = host("h1", devices=("camera",))
    first = run(hosts, *services)
    second = run([*hosts, host("h0"), host("h3", devices=("camera",))], *services,
                 current=first.assignments)  # fmt: skip
    assert second.assignments == first.assignments
    bigger = run([*hosts, host("h0")], svc("web", replicas=6), *services[1:],
                 current=first.assignments)  # fmt: skip
    assert {k: v for k, v in bigger.assignments.items() if k in first.assignments} == (
        first.assignments
    )
    assert bigger.assignments["a.web.4"] == "h0" and bigger.assignments["a.web.5"] == "h0"


def test_an_instance_leaves_a_host_that_no_longer_qualifies() -> None:
    services = [svc("web", where="zone = line-1")]
    first = run([host("h1", zone="line-1"), host("h2", zone="line-1")], *services)
    assert first.assignments == {"a.web.0": "h1"}
    relabelled = [host("h1", zone="line-2"), host("h2", zone="line-1")]
    assert run(relabelled, *services, current=first.assignments).assignments == {"a.web.0": "h2"}
    gone = run([host("h2", zone="line-1")], *services, current=first.assignments)
    assert gone.assignments == {"a.web.0": "h2"}


def test_instances_of_removed_services_and_unknown_hosts_are_forgotten() -> None:
    result = run([host("h1")], svc("web"), current={"a.old.0": "h1", "a.web.0": "dead"})
    assert result.assignments == {"a.web.0": "h1"}


def test_single_host_sites_work_unchanged() -> None:
    result = run(
        [host("only", cpus=2, memory=2 * GI, devices=("camera",), gpus=1)],
        svc("cam", devices=("camera",), memory=GI),
        svc("gpu", gpus=1, cpus=1),
        svc("web", replicas=3, cpus=0.25),
        svc("agent", per_host=True),
    )
    assert set(result.assignments.values()) == {"only"}
    assert len(result.assignments) == 6 and result.pending == {}


def random_case(seed: int) -> tuple[list[HostState], list[Application], dict[str, str]]:
    rng = random.Random(seed)
    hosts = [
        host(
            f"h{i}",
            cpus=rng.choice([1, 2, 4]),
            memory=rng.choice([1, 2, 4]) * GI,
            gpus=rng.choice([0, 0, 1, 2]),
            devices=tuple(d for d in ("camera", "gps") if rng.random() < 0.4),
            zone=rng.choice(["line-1", "line-2"]),
        )
        for i in range(rng.randint(1, 6))
    ]
    apps = [
        app(
            f"app{a}",
            *(
                svc(
                    f"s{s}",
                    replicas=rng.randint(0, 4),
                    per_host=rng.random() < 0.2,
                    priority=rng.choice(list(Priority)),
                    where=rng.choice(["", "zone = line-1", "zone != line-1"]),
                    devices=tuple(d for d in ("camera", "gps") if rng.random() < 0.15),
                    gpus=rng.choice([0, 0, 0, 1, 2]),
                    cpus=rng.choice([0, 0.25, 0.5, 1]),
                    memory=rng.choice([0, 256 * MI, GI]),
                )
                for s in range(rng.randint(1, 4))
            ),
        )
        for a in range(rng.randint(1, 4))
    ]
    everything = demands(apps, hosts)
    current = {d.instance_id: rng.choice(hosts).id for d in everything if rng.random() < 0.5}
    return hosts, apps, current


@pytest.mark.parametrize("seed", range(150))
def test_random_sites_are_scheduled_deterministically_and_within_capacity(seed: int) -> None:
    hosts, apps, current = random_case(seed)
    result = schedule(hosts, apps, current)
    shuffled = random.Random(seed + 1)
    hosts2, apps2 = hosts[:], apps[:]
    shuffled.shuffle(hosts2)
    shuffled.shuffle(apps2)
    current2 = dict(sorted(current.items(), reverse=True))
    assert schedule(hosts2, apps2, current2) == result  # same input, same output
    everything = {d.instance_id for d in result.demands}
    assert set(result.assignments) | set(result.pending) == everything
    assert not set(result.assignments) & set(result.pending)
    by_id = {h.id: h for h in hosts}
    for h in hosts:
        placed = [result.demand(i) for i in result.on_host(h.id)]
        assert sum(d.resources.cpus for d in placed) <= h.cpus + 1e-9
        assert sum(d.resources.memory for d in placed) <= h.memory
        assert sum(d.placement.gpus for d in placed) <= h.gpus
        for d in placed:
            assert set(d.placement.devices) <= h.device_labels
    for instance, host_id in result.assignments.items():
        where = result.demand(instance).placement.match_host_labels
        zone = dict(by_id[host_id].labels)["zone"]
        assert where != "zone = line-1" or zone == "line-1"
        assert where != "zone != line-1" or zone != "line-1"
    for victim in result.evicted:
        assert current[victim] != result.assignments.get(victim)
    # Feeding the result back in changes nothing: the schedule is a fixed point.
    again = schedule(hosts, apps, result.assignments)
    assert again.assignments == result.assignments and again.evicted == ()


# -- bad input -------------------------------------------------------------------------------


def test_a_device_label_no_rule_defines_warns_and_leaves_the_instance_pending() -> None:
    hosts = [host("h1", devices=("camera",), defined=("camera", "gps"))]
    result = run(hosts, svc("s", devices=("scanner",)))
    assert result.warnings == ('a.s: no device rule on any host defines the label "scanner"',)
    assert result.pending == {
        "a.s.0": ("h1: no device labelled scanner (no device rule defines it)",)
    }
    defined_elsewhere = run(hosts, svc("s", devices=("gps",)))
    assert defined_elsewhere.warnings == ()  # a rule exists: the device is just not plugged in
    assert defined_elsewhere.pending == {"a.s.0": ("h1: no device labelled gps",)}
    unknown_rules = run([host("h1")], svc("s", devices=("gps",)))
    assert unknown_rules.warnings == ()  # hosts that do not say which labels their rules give


@pytest.mark.parametrize(
    ("service", "reason", "warning"),
    [
        (svc("s", gpus=-1), "gpus must not be negative (got -1)", None),
        (svc("s", cpus=-0.5), "cpus must be a finite number, 0 or more (got -0.5)", None),
        (svc("s", cpus=float("nan")), "cpus must be a finite number, 0 or more (got nan)", None),
        (svc("s", memory=-1), "memory must not be negative (got -1)", None),
        (
            svc("s", where="zone = "),
            'match-host-labels "zone = " does not parse: column 8: expected a value after "="',
            None,
        ),
        (svc("s", gpus=4), "h1: needs 4 GPUs, has 1 in total",
         "a.s: needs 4 GPUs, more than any host has"),
        (svc("s", cpus=64), "h1: needs 64 CPUs, has 4 in total",
         "a.s: needs 64 CPUs, more than any host has"),
        (
            svc("s", memory=64 * GI),
            "h1: needs 64Gi memory, has 8Gi in total",
            "a.s: needs 64Gi memory, more than any host has",
        ),
    ],
    ids=["negative-gpus", "negative-cpus", "nan-cpus", "negative-memory", "bad-expression",
         "too-many-gpus", "too-many-cpus", "too-much-memory"],
)  # fmt: skip
def test_impossible_requests_are_pending_with_a_reason_and_warned_about(
    service: Service, reason: str, warning: str | None
) -> None:
    result = run([host("h1", gpus=1)], service)
    assert result.assignments == {}
    assert result.pending == {"a.s.0": (reason,)}
    assert len(result.warnings) == 1
    assert result.warnings[0] == (warning or f"a.s: {reason}")


def test_a_negative_gpu_count_on_one_per_matching_host_shows_per_host_instances() -> None:
    result = run([host("h1"), host("h2")], svc("agent", per_host=True, gpus=-2))
    assert result.pending == {
        "a.agent.h1": ("gpus must not be negative (got -2)",),
        "a.agent.h2": ("gpus must not be negative (got -2)",),
    }


def test_duplicate_host_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        schedule([host("h"), host("h")], [], {})


def test_host_state_comes_from_host_info() -> None:
    rules = parse_rules([{"label": "serial", "match": {"SUBSYSTEM": "tty"}}])
    inventory = inventory_from_properties(
        [{"DEVPATH": "/devices/x/ttyACM0", "SUBSYSTEM": "tty", "DEVNAME": "/dev/ttyACM0"}], rules
    )
    gpu = Gpu(0, "NVIDIA Corporation", "A10", None, ("/dev/nvidia0",), "0000:17:00.0", "nvidia")
    inventory = Inventory(inventory.devices, (gpu,), inventory.defined_labels)
    info = HostInfo("h1", (("system/gpu", "nvidia"), ("zone", "a")), inventory, 2.0, 4 * GI)
    state = host_state(info)
    assert state == HostState(
        "h1",
        (("system/gpu", "nvidia"), ("zone", "a")),
        frozenset({"serial"}),
        1,
        2.0,
        4 * GI,
        frozenset({"serial", "camera"}),
        ("0000:17:00.0",),
    )
    assert state.label_map == {"system/gpu": "nvidia", "zone": "a"}


def test_two_replicas_publishing_the_same_host_port_do_not_share_a_host() -> None:
    from enforcer.shared.spec.model import Application, Container, Ingress, Network, Service

    web = Service(
        name="web",
        containers=(Container(name="main", image="img"),),
        replicas=2,
        network=Network(ingress=(Ingress(port=8080, host_port=18080),)),
    )
    app = Application(name="shop", version="1", services=(web,))
    hosts = [
        HostState(id="a", labels=(), device_labels=frozenset(), gpus=0, cpus=4, memory=8 << 30),
    ]
    one = schedule(hosts, [app], {})
    assert one.assignments == {"shop.web.0": "a"}
    assert one.pending == {"shop.web.1": ("a: host port 18080/tcp is taken by shop.web.0",)}

    hosts.append(
        HostState(id="b", labels=(), device_labels=frozenset(), gpus=0, cpus=4, memory=8 << 30)
    )
    two = schedule(hosts, [app], one.assignments)
    assert two.assignments == {"shop.web.0": "a", "shop.web.1": "b"}
