"""Which host of the site runs which service instance (DESIGN.md, "Site, hosts and the
scheduler").

`schedule` is a pure, deterministic function: hosts, applications and the current assignments
in; assignments, a reason per host for every instance that cannot be placed, the instances
preempted, and warnings out. The steps, as in Nomad's scheduler:

1. *Demands*: every service expands into instances, ``<app>.<service>.<n>`` (replicated) or
   ``<app>.<service>.<host-id>`` for each host that qualifies (one-per-matching-host: its labels
   match, it has the devices and enough GPUs in total).
2. *Keep*: an instance already on a host that can still hold it stays there, higher priority
   first (a new host does not shuffle running instances).
3. *Place* the rest, higher priority first: filter the hosts
   (`enforcer.schedule.feasibility`), then rank them — fewest instances of the same service
   (spread), then least allocated after placing, then fewest instances, then host id.
4. *Preempt*: when no host fits, a ``critical`` or ``high`` instance may evict instances of
   strictly lower priority from one host that would then fit (the fewest and lowest-priority
   victims); the evicted instances are placed again elsewhere when they fit, and are pending
   otherwise.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from enforcer.schedule.demands import InstanceDemand, demands, warnings
from enforcer.schedule.feasibility import invalid_request, label_expression, static_reason
from enforcer.schedule.hosts import HostState, host_state
from enforcer.schedule.load import HostLoad, demand_size
from enforcer.schedule.preemption import choose_victims
from enforcer.shared.labels import LabelSyntaxError
from enforcer.shared.spec.model import Application, Placement, Priority, Resources

__all__ = ["HostState", "InstanceDemand", "Schedule", "demands", "host_state", "schedule"]

PREEMPTING = Priority.HIGH  # this priority and above may preempt


@dataclass(frozen=True)
class Schedule:
    assignments: dict[str, str]  # instance id -> host id, sorted by instance id
    pending: dict[str, tuple[str, ...]]  # instance id -> one reason per host, or one reason
    evicted: tuple[str, ...]  # instances preempted off their current host, sorted
    # instance id -> the GPUs of its host assigned to it (`HostState.gpu_names`), when it asks
    # for any: no two instances on a host get the same GPU
    gpus: dict[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    demands: tuple[InstanceDemand, ...] = field(default=(), repr=False)
    _index: dict[str, InstanceDemand] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update((d.instance_id, d) for d in self.demands)

    def demand(self, instance_id: str) -> InstanceDemand:
        """The demand behind an instance id; KeyError for an unknown one."""
        return self._index[instance_id]

    def on_host(self, host_id: str) -> list[str]:
        """The instances assigned to `host_id`, sorted."""
        return [i for i, h in self.assignments.items() if h == host_id]


# -- scheduling ----------------------------------------------------------------------------


class _Run:
    def __init__(self, hosts: Sequence[HostState]) -> None:
        self.states = sorted(hosts, key=lambda h: h.id)
        self.hosts = [HostLoad(h) for h in self.states]
        self.by_id = {h.id: h for h in self.hosts}
        self.position = {h.id: i for i, h in enumerate(self.hosts)}
        if len(self.by_id) != len(self.hosts):
            raise ValueError("schedule: host ids must be unique")
        self.label_maps = [dict(h.labels) for h in self.states]
        self._static: dict[tuple[Placement, Resources], tuple[str | None, ...]] = {}
        self._feasible: dict[tuple[Placement, Resources], list[int]] = {}
        self.assignments: dict[str, str] = {}
        self.pending: dict[str, tuple[str, ...]] = {}
        self.evicted: set[str] = set()
        self.preempted_by: dict[str, tuple[str, str]] = {}  # victim -> (host, instance)
        self.current_gpus: Mapping[str, Sequence[str]] = {}  # the GPUs instances had

    def static(self, d: InstanceDemand) -> tuple[str | None, ...]:
        """Per host (in id order): why it can never take `d`, or None."""
        key = (d.placement, d.resources)
        found = self._static.get(key)
        if found is None:
            expr = label_expression(d.placement.match_host_labels)
            assert not isinstance(expr, LabelSyntaxError)  # `_invalid` keeps those out
            text = d.placement.match_host_labels
            found = tuple(
                static_reason(h, labels, expr, text, d.placement, d.resources)
                for h, labels in zip(self.states, self.label_maps, strict=True)
            )
            self._static[key] = found
            self._feasible[key] = [i for i, reason in enumerate(found) if reason is None]
        return found

    def feasible(self, d: InstanceDemand) -> list[int]:
        """Indexes of the hosts that pass the static checks for `d`."""
        self.static(d)
        return self._feasible[(d.placement, d.resources)]

    def scope(self, d: InstanceDemand) -> list[int]:
        """Indexes of the hosts `d` may run on."""
        if d.host is None:
            return list(range(len(self.hosts)))
        return [self.position[d.host]] if d.host in self.position else []

    def place(self, d: InstanceDemand, host: HostLoad) -> None:
        host.add(d, gpus=self.current_gpus.get(d.instance_id, ()))
        self.assignments[d.instance_id] = host.id

    def keep(self, d: InstanceDemand, host_id: str | None) -> bool:
        host = self.by_id.get(host_id or "")
        if host is None or (d.host is not None and d.host != host.id) or _invalid(d):
            return False
        if self.static(d)[self.position[host.id]] is not None or host.fit(d) is not None:
            return False
        self.place(d, host)
        return True

    def try_place(self, d: InstanceDemand) -> list[InstanceDemand] | None:
        """Place `d`; the instances it evicted, or None when it stays pending."""
        invalid = _invalid(d)
        if invalid is not None:
            self.pending[d.instance_id] = (invalid,)
            return None
        if not self.hosts:
            self.pending[d.instance_id] = ("no hosts in the site",)
            return None
        best = self.best_host(d)
        if best is not None:
            self.place(d, best)
            return []
        plan = self.preemption(d) if d.priority >= PREEMPTING else None
        if plan is None:
            static = self.static(d)
            self.pending[d.instance_id] = tuple(
                self._explain(d, self.hosts[i], static[i] or self.hosts[i].fit(d) or "")
                for i in self.scope(d)
            )
            return None
        host, victims = plan
        for victim in victims:
            host.add(victim, -1)
            del self.assignments[victim.instance_id]
            self.evicted.add(victim.instance_id)
            self.preempted_by[victim.instance_id] = (host.id, d.instance_id)
        self.place(d, host)
        return victims

    def best_host(self, d: InstanceDemand) -> HostLoad | None:
        """The best-ranked host that can take `d` now: fewest instances of its service (spread),
        then least allocated once it is added, then fewest instances, then host id."""
        cpus, memory, gpus = demand_size(d)
        service = (d.app, d.service)
        best: tuple[int, float, int, str] | None = None
        chosen: HostLoad | None = None
        feasible = self.feasible(d)
        if d.host is not None:
            static = self.static(d)
            feasible = [i for i in self.scope(d) if static[i] is None]
        for i in feasible:  # the hot loop of a schedule: keep it plain
            host = self.hosts[i]
            if gpus > host.free_gpus or cpus > host.free_cpus or memory > host.free_memory:
                continue
            if d.host_ports and host.port_taken(d) is not None:
                continue
            spread = host.spread.get(service, 0)
            if best is not None and spread > best[0]:
                continue
            load = (host.cpus - host.free_cpus + cpus) * host.per_cpu + (
                host.memory - host.free_memory + memory
            ) * host.per_byte
            rank = (spread, load, len(host.placed), host.id)
            if best is None or rank < best:
                best, chosen = rank, host
        return chosen

    def _explain(self, d: InstanceDemand, host: HostLoad, reason: str) -> str:
        by = self.preempted_by.get(d.instance_id)
        if by is not None and by[0] == host.id:
            return f"{host.id}: preempted by {by[1]}"
        return f"{host.id}: {reason}"

    def preemption(self, d: InstanceDemand) -> tuple[HostLoad, list[InstanceDemand]] | None:
        """The host, and the fewest and lowest-priority victims there, that make room for `d`."""
        best: tuple[tuple[int, int, int, str], HostLoad, list[InstanceDemand]] | None = None
        static = self.static(d)
        for i in self.scope(d):
            host = self.hosts[i]
            if static[i] is not None or (d.host_ports and host.port_taken(d) is not None):
                continue  # preemption frees resources, not ports
            victims = choose_victims(d, host)
            if victims is None:
                continue
            priorities = [int(v.priority) for v in victims]
            cost = (max(priorities), len(victims), sum(priorities), host.id)
            if best is None or cost < best[0]:
                best = (cost, host, victims)
        return None if best is None else (best[1], sorted(best[2], key=lambda v: v.order))


def _invalid(d: InstanceDemand) -> str | None:
    """Why `d` can run on no host whatever the hosts are, or None."""
    expr = label_expression(d.placement.match_host_labels)
    if isinstance(expr, LabelSyntaxError):
        return f'match-host-labels "{d.placement.match_host_labels}" does not parse: {expr}'
    return invalid_request(d.placement, d.resources)


def schedule(
    hosts: Sequence[HostState],
    applications: Sequence[Application],
    current: Mapping[str, str],
    current_gpus: Mapping[str, Sequence[str]] | None = None,
) -> Schedule:
    """Assign every instance of `applications` to a host, keeping `current` where it holds,
    and the GPUs of `current_gpus` (instance id -> GPU ids) where they are still free."""
    run = _Run(hosts)
    run.current_gpus = current_gpus or {}
    reserved = frozenset(g for ids in run.current_gpus.values() for g in ids)
    for host in run.hosts:
        host.reserved = reserved
    everything = demands(applications, run.states)
    todo: list[tuple[tuple[int, str, str, int, str], InstanceDemand]] = []
    for d in everything:  # already in scheduling order: higher priority keeps its place first
        if not run.keep(d, current.get(d.instance_id)):
            todo.append((d.order, d))
    heapq.heapify(todo)
    while todo:
        _, d = heapq.heappop(todo)
        for victim in run.try_place(d) or ():
            heapq.heappush(todo, (victim.order, victim))
    return Schedule(
        assignments=dict(sorted(run.assignments.items())),
        pending=dict(sorted(run.pending.items())),
        evicted=tuple(sorted(run.evicted)),
        gpus=dict(sorted((i, g) for host in run.hosts for i, g in host.gpus_of.items())),
        warnings=tuple(warnings(applications, run.states)),
        demands=tuple(everything),
    )
