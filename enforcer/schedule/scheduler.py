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
from dataclasses import dataclass, field, replace

from enforcer.devices.udev import BUILTIN_LABELS
from enforcer.schedule.feasibility import (
    HostState,
    describe_cpus,
    describe_gpus,
    describe_memory,
    fit_reason,
    host_state,
    invalid_request,
    label_expression,
    milli,
    static_reason,
)
from enforcer.shared.labels import Expr, LabelSyntaxError
from enforcer.shared.spec.model import Application, Mode, Placement, Priority, Resources, Service

__all__ = ["HostState", "InstanceDemand", "Schedule", "demands", "host_state", "schedule"]

PREEMPTING = Priority.HIGH  # this priority and above may preempt


@dataclass(frozen=True)
class InstanceDemand:
    instance_id: str
    app: str
    service: str
    tenant: str
    priority: Priority
    placement: Placement
    resources: Resources
    host: str | None = None  # one-per-matching-host: the only host it may run on
    ordinal: int = 0  # n of a replicated instance
    host_ports: tuple[str, ...] = ()  # ingress "port/protocol" it publishes on its host

    @property
    def order(self) -> tuple[int, str, str, int, str]:
        """Scheduling order: higher priority first, then by name (replica numbers as numbers)."""
        return (-int(self.priority), self.app, self.service, self.ordinal, self.host or "")


@dataclass(frozen=True)
class Schedule:
    assignments: dict[str, str]  # instance id -> host id, sorted by instance id
    pending: dict[str, tuple[str, ...]]  # instance id -> one reason per host, or one reason
    evicted: tuple[str, ...]  # instances preempted off their current host, sorted
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


# -- demands -------------------------------------------------------------------------------


def _matcher(service: Service) -> Expr | LabelSyntaxError:
    return label_expression(service.placement.match_host_labels)


def _qualifies(host: HostState, service: Service, expr: Expr) -> bool:
    """Whether a one-per-matching-host service gets an instance on `host`."""
    placement = service.placement
    if not expr.matches(host.label_map):
        return False
    if invalid_request(placement, service.resources) is not None:
        return True  # an instance that shows why it cannot run
    return placement.gpus <= host.gpus and all(d in host.device_labels for d in placement.devices)


def demands(
    applications: Sequence[Application], hosts: Sequence[HostState]
) -> list[InstanceDemand]:
    """Every instance the applications ask for, in scheduling order."""
    out: list[InstanceDemand] = []
    for app in applications:
        for service in app.services:
            base = InstanceDemand(
                "", app.name, service.name, app.tenant, service.priority,
                service.placement, service.resources,
                host_ports=tuple(f"{i.host_port}/{i.protocol}" for i in service.network.ingress),
            )  # fmt: skip
            prefix = f"{app.name}.{service.name}."
            if service.mode is Mode.ONE_PER_MATCHING_HOST:
                expr = _matcher(service)
                if isinstance(expr, LabelSyntaxError):
                    continue
                for host in hosts:
                    if _qualifies(host, service, expr):
                        out.append(replace(base, instance_id=prefix + host.id, host=host.id))
            else:
                for n in range(max(service.replicas, 0)):
                    out.append(replace(base, instance_id=f"{prefix}{n}", ordinal=n))
    out.sort(key=lambda d: d.order)
    return out


def _warnings(applications: Sequence[Application], hosts: Sequence[HostState]) -> list[str]:
    out: list[str] = []
    known = set(BUILTIN_LABELS)
    for host in hosts:
        known |= host.defined_device_labels | host.device_labels
    rules_known = any(host.defined_device_labels for host in hosts)  # else: hand-made hosts
    most_gpus = max((h.gpus for h in hosts), default=0)
    most_cpus = max((milli(h.cpus) for h in hosts), default=0)
    most_memory = max((h.memory for h in hosts), default=0)
    for app in applications:
        for service in app.services:
            name = f"{app.name}.{service.name}"
            placement, resources = service.placement, service.resources
            expr = _matcher(service)
            if isinstance(expr, LabelSyntaxError):
                text = placement.match_host_labels
                out.append(f'{name}: match-host-labels "{text}" does not parse: {expr}')
                continue
            invalid = invalid_request(placement, resources)
            if invalid is not None:
                out.append(f"{name}: {invalid}")
                continue
            if not hosts:
                continue
            for label in placement.devices:
                if rules_known and label not in known:
                    out.append(f'{name}: no device rule on any host defines the label "{label}"')
            if placement.gpus > most_gpus:
                needs = describe_gpus(placement.gpus)
                out.append(f"{name}: needs {needs}, more than any host has")
            if milli(resources.cpus) > most_cpus:
                needs = describe_cpus(milli(resources.cpus))
                out.append(f"{name}: needs {needs}, more than any host has")
            if resources.memory > most_memory:
                needs = describe_memory(resources.memory)
                out.append(f"{name}: needs {needs} memory, more than any host has")
            if service.mode is Mode.ONE_PER_MATCHING_HOST and not any(
                _qualifies(h, service, expr) for h in hosts
            ):
                out.append(f"{name}: no host qualifies for one-per-matching-host")
    return sorted(set(out))


# -- scheduling ----------------------------------------------------------------------------


class _Host:
    """One host's bookkeeping during a single `schedule` call."""

    __slots__ = (
        "cpus", "free_cpus", "free_gpus", "free_memory", "id", "memory", "per_byte", "per_cpu",
        "placed", "ports", "spread",
    )  # fmt: skip

    def __init__(self, host: HostState) -> None:
        self.id = host.id
        self.cpus = milli(host.cpus)
        self.memory = host.memory
        self.free_cpus = self.cpus
        self.free_memory = host.memory
        self.free_gpus = host.gpus
        self.placed: dict[str, InstanceDemand] = {}
        self.ports: dict[str, str] = {}  # published host port -> the instance holding it
        self.spread: dict[tuple[str, str], int] = {}
        # Weights that make "share of CPUs + share of memory" a mean over the known dimensions.
        dims = (self.cpus > 0) + (self.memory > 0)
        self.per_cpu = 1 / (self.cpus * dims) if self.cpus > 0 else 0.0
        self.per_byte = 1 / (self.memory * dims) if self.memory > 0 else 0.0

    def add(self, d: InstanceDemand, sign: int = 1) -> None:
        self.free_cpus -= sign * milli(d.resources.cpus)
        self.free_memory -= sign * d.resources.memory
        self.free_gpus -= sign * d.placement.gpus
        key = (d.app, d.service)
        self.spread[key] = self.spread.get(key, 0) + sign
        if sign > 0:
            self.placed[d.instance_id] = d
            self.ports.update((port, d.instance_id) for port in d.host_ports)
        else:
            del self.placed[d.instance_id]
            for port in d.host_ports:
                self.ports.pop(port, None)

    def port_taken(self, d: InstanceDemand) -> str | None:
        """Why `d` cannot publish its host ports here, or None."""
        for port in d.host_ports:
            holder = self.ports.get(port)
            if holder is not None and holder != d.instance_id:
                return f"host port {port} is taken by {holder}"
        return None

    def fit(self, d: InstanceDemand, extra: tuple[int, int, int] = (0, 0, 0)) -> str | None:
        taken = self.port_taken(d) if d.host_ports else None
        if taken is not None:
            return taken
        return fit_reason(
            milli(d.resources.cpus), d.resources.memory, d.placement.gpus,
            self.free_cpus + extra[0], self.free_memory + extra[1], self.free_gpus + extra[2],
        )  # fmt: skip


class _Run:
    def __init__(self, hosts: Sequence[HostState]) -> None:
        self.states = sorted(hosts, key=lambda h: h.id)
        self.hosts = [_Host(h) for h in self.states]
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

    def place(self, d: InstanceDemand, host: _Host) -> None:
        host.add(d)
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

    def best_host(self, d: InstanceDemand) -> _Host | None:
        """The best-ranked host that can take `d` now: fewest instances of its service (spread),
        then least allocated once it is added, then fewest instances, then host id."""
        cpus, memory, gpus = _size(d)
        service = (d.app, d.service)
        best: tuple[int, float, int, str] | None = None
        chosen: _Host | None = None
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

    def _explain(self, d: InstanceDemand, host: _Host, reason: str) -> str:
        by = self.preempted_by.get(d.instance_id)
        if by is not None and by[0] == host.id:
            return f"{host.id}: preempted by {by[1]}"
        return f"{host.id}: {reason}"

    def preemption(self, d: InstanceDemand) -> tuple[_Host, list[InstanceDemand]] | None:
        """The host, and the fewest and lowest-priority victims there, that make room for `d`."""
        best: tuple[tuple[int, int, int, str], _Host, list[InstanceDemand]] | None = None
        static = self.static(d)
        for i in self.scope(d):
            host = self.hosts[i]
            if static[i] is not None or (d.host_ports and host.port_taken(d) is not None):
                continue  # preemption frees resources, not ports
            victims = _victims(d, host)
            if victims is None:
                continue
            priorities = [int(v.priority) for v in victims]
            cost = (max(priorities), len(victims), sum(priorities), host.id)
            if best is None or cost < best[0]:
                best = (cost, host, victims)
        return None if best is None else (best[1], sorted(best[2], key=lambda v: v.order))


def _victims(d: InstanceDemand, host: _Host) -> list[InstanceDemand] | None:
    """Instances of lower priority than `d` on `host` whose eviction lets `d` fit, or None.

    Lowest priority first; within one priority, the smallest instance that completes the room
    alone, else the one that frees most of what is still missing (as Nomad does); instances
    that free nothing that is missing are never chosen. Victims that turn out not to be needed
    are spared again, higher priority first.
    """
    need = _size(d)
    capacity = (max(host.cpus, 1), max(host.memory, 1), max(host.free_gpus + need[2], 1))
    candidates = sorted(  # ties go to the last replica: min() keeps the first it sees
        (v for v in host.placed.values() if v.priority < d.priority),
        key=lambda v: v.order,
        reverse=True,
    )
    most = _plus((host.free_cpus, host.free_memory, host.free_gpus), candidates, 1)
    if any(m < n for m, n in zip(most, need, strict=True)):
        return None  # evicting every candidate would not be enough
    victims: list[InstanceDemand] = []
    freed = (0, 0, 0)
    while host.fit(d, freed) is not None:
        free = (host.free_cpus + freed[0], host.free_memory + freed[1], host.free_gpus + freed[2])
        missing = tuple(max(n - f, 0) for n, f in zip(need, free, strict=True))
        useful = [
            v for v in candidates if any(s and m for s, m in zip(_size(v), missing, strict=True))
        ]
        if not useful:
            return None
        level = min(v.priority for v in useful)
        victim = min(
            (v for v in useful if v.priority == level),
            key=lambda v: _victim_score(v, missing, capacity),
        )
        candidates.remove(victim)
        victims.append(victim)
        freed = _plus(freed, [victim], 1)
    for victim in sorted(victims, key=lambda v: v.order):  # spare the higher priority first
        less = _plus(freed, [victim], -1)
        if host.fit(d, less) is None:
            victims.remove(victim)
            freed = less
    return victims


def _victim_score(
    v: InstanceDemand, missing: Sequence[int], capacity: Sequence[int]
) -> tuple[bool, float]:
    """Smaller is a better victim: one that covers what is missing, the smallest such; else
    the one that frees the largest share of it."""
    size = _size(v)
    covers = all(s >= m for s, m in zip(size, missing, strict=True))
    if covers:
        return (False, sum(s / c for s, c in zip(size, capacity, strict=True)))
    return (True, -sum(min(s, m) / c for s, m, c in zip(size, missing, capacity, strict=True)))


def _size(d: InstanceDemand) -> tuple[int, int, int]:
    return (milli(d.resources.cpus), d.resources.memory, d.placement.gpus)


def _invalid(d: InstanceDemand) -> str | None:
    """Why `d` can run on no host whatever the hosts are, or None."""
    expr = label_expression(d.placement.match_host_labels)
    if isinstance(expr, LabelSyntaxError):
        return f'match-host-labels "{d.placement.match_host_labels}" does not parse: {expr}'
    return invalid_request(d.placement, d.resources)


def _plus(
    amounts: tuple[int, int, int], demands: Sequence[InstanceDemand], sign: int
) -> tuple[int, int, int]:
    """`amounts` (CPUs in thousandths, bytes, GPUs) plus (or minus) what `demands` use."""
    cpus, memory, gpus = amounts
    for d in demands:
        size = _size(d)
        cpus, memory, gpus = cpus + sign * size[0], memory + sign * size[1], gpus + sign * size[2]
    return (cpus, memory, gpus)


def schedule(
    hosts: Sequence[HostState],
    applications: Sequence[Application],
    current: Mapping[str, str],
) -> Schedule:
    """Assign every instance of `applications` to a host, keeping `current` where it holds."""
    run = _Run(hosts)
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
        warnings=tuple(_warnings(applications, run.states)),
        demands=tuple(everything),
    )
