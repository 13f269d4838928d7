"""How long `enforcer.schedule.scheduler.schedule` takes, side by side for growing sites.

Prints, for each case, the time of a first placement (nothing running) and of a steady-state
run (everything already assigned, as on every reconcile), best of several runs, and the ratio
of the doubled cases to their base: services x2 on one host, and services x2 with hosts x2.

    .venv/bin/python bench/bench_scheduler.py
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence

from enforcer.schedule.scheduler import HostState, Schedule, schedule
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
ZONES = 10
REPEAT = 7


def site(services: int, hosts: int, seed: int = 42) -> tuple[list[HostState], list[Application]]:
    rng = random.Random(seed)
    host_states = [
        HostState(
            id=f"host-{i:03d}",
            labels=(("system/arch", "amd64"), ("zone", f"line-{i % ZONES}")),
            device_labels=frozenset({"camera"} if i % 3 == 0 else ()),
            gpus=2 if i % 5 == 0 else 0,
            cpus=64.0,
            memory=256 * GI,
            defined_device_labels=frozenset({"camera"}),
        )
        for i in range(hosts)
    ]
    apps: list[Application] = []
    per_app = 10
    # Small enough that every instance fits: overload would time preemption, not placement.
    cpus, memory = (
        ([0.05, 0.1, 0.25], [32, 64, 128]) if hosts == 1 else ([0.1, 0.25, 0.5], [64, 128, 256])
    )
    for a in range(services // per_app):
        svcs = []
        for s in range(per_app):
            kind = rng.random()
            zone = 0 if hosts == 1 else rng.randrange(ZONES)
            placement = Placement(
                match_host_labels=rng.choice(["", "", f"zone = line-{zone}",
                                              "zone != line-9 and system/arch = amd64"]),
                devices=("camera",) if kind < 0.05 else (),
                gpus=1 if 0.05 <= kind < 0.08 else 0,
            )  # fmt: skip
            svcs.append(
                Service(
                    name=f"svc-{s}",
                    containers=(Container("main", "registry.local:5000/app:1"),),
                    mode=Mode.REPLICATED,
                    replicas=1 if hosts == 1 else rng.choice([1, 1, 2]),
                    priority=rng.choice(list(Priority)),
                    placement=placement,
                    resources=Resources(cpus=rng.choice(cpus), memory=rng.choice(memory) * MI),
                )
            )
        apps.append(Application(f"app-{a:03d}", "1", tuple(svcs)))
    return host_states, apps


def best_time(
    hosts: Sequence[HostState], apps: Sequence[Application], current: Mapping[str, str]
) -> tuple[float, Schedule]:
    best = float("inf")
    result = schedule(hosts, apps, current)
    for _ in range(REPEAT):
        start = time.perf_counter()
        result = schedule(hosts, apps, current)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    cases = [(1000, 50), (2000, 100), (200, 1), (400, 1)]
    rows: dict[tuple[int, int], tuple[int, int, float, float]] = {}
    print(f"{'services':>8} {'hosts':>5} {'instances':>9} {'pending':>7} "
          f"{'first (ms)':>10} {'steady (ms)':>11} {'us/instance':>11}")  # fmt: skip
    for services, hosts in cases:
        host_states, apps = site(services, hosts)
        first, result = best_time(host_states, apps, {})
        steady, again = best_time(host_states, apps, result.assignments)
        assert again.assignments == result.assignments
        instances = len(result.demands)
        rows[(services, hosts)] = (instances, len(result.pending), first, steady)
        print(f"{services:>8} {hosts:>5} {instances:>9} {len(result.pending):>7} "
              f"{first * 1000:>10.1f} {steady * 1000:>11.1f} "
              f"{first / instances * 1e6:>11.1f}")  # fmt: skip
    print()
    for big, small in (((2000, 100), (1000, 50)), ((400, 1), (200, 1))):
        bi, _, bf, bs = rows[big]
        si, _, sf, ss = rows[small]
        pairs = bi * big[1] / (si * small[1])
        print(f"{big[0]}/{big[1]} vs {small[0]}/{small[1]}: instances x{bi / si:.2f}, "
              f"instances*hosts x{pairs:.2f}; first placement x{bf / sf:.2f}, "
              f"steady state x{bs / ss:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
