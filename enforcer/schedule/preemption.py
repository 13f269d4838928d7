"""Preemption: which lower-priority instances to evict from a host to make room (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from enforcer.schedule.demands import InstanceDemand
from enforcer.schedule.load import HostLoad, add_sizes, demand_size

__all__ = ["choose_victims"]


def choose_victims(d: InstanceDemand, host: HostLoad) -> list[InstanceDemand] | None:
    """Instances of lower priority than `d` on `host` whose eviction lets `d` fit, or None.

    Lowest priority first; within one priority, the smallest instance that completes the room
    alone, else the one that frees most of what is still missing (as Nomad does); instances
    that free nothing that is missing are never chosen. Victims that turn out not to be needed
    are spared again, higher priority first.
    """
    need = demand_size(d)
    capacity = (max(host.cpus, 1), max(host.memory, 1), max(host.free_gpus + need[2], 1))
    candidates = sorted(  # ties go to the last replica: min() keeps the first it sees
        (v for v in host.placed.values() if v.priority < d.priority),
        key=lambda v: v.order,
        reverse=True,
    )
    most = add_sizes((host.free_cpus, host.free_memory, host.free_gpus), candidates, 1)
    if any(m < n for m, n in zip(most, need, strict=True)):
        return None  # evicting every candidate would not be enough
    victims: list[InstanceDemand] = []
    freed = (0, 0, 0)
    while host.fit(d, freed) is not None:
        free = (host.free_cpus + freed[0], host.free_memory + freed[1], host.free_gpus + freed[2])
        missing = tuple(max(n - f, 0) for n, f in zip(need, free, strict=True))
        useful = [
            v
            for v in candidates
            if any(s and m for s, m in zip(demand_size(v), missing, strict=True))
        ]
        if not useful:
            return None
        level = min(v.priority for v in useful)
        victim = min(
            (v for v in useful if v.priority == level),
            key=lambda v: victim_score(v, missing, capacity),
        )
        candidates.remove(victim)
        victims.append(victim)
        freed = add_sizes(freed, [victim], 1)
    for victim in sorted(victims, key=lambda v: v.order):  # spare the higher priority first
        less = add_sizes(freed, [victim], -1)
        if host.fit(d, less) is None:
            victims.remove(victim)
            freed = less
    return victims


def victim_score(
    v: InstanceDemand, missing: Sequence[int], capacity: Sequence[int]
) -> tuple[bool, float]:
    """Smaller is a better victim: one that covers what is missing, the smallest such; else
    the one that frees the largest share of it."""
    size = demand_size(v)
    covers = all(s >= m for s, m in zip(size, missing, strict=True))
    if covers:
        return (False, sum(s / c for s, c in zip(size, capacity, strict=True)))
    return (True, -sum(min(s, m) / c for s, m, c in zip(size, missing, capacity, strict=True)))
