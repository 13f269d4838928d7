"""One host's load during a single scheduling run: what is placed there and what is still free."""

from __future__ import annotations

from collections.abc import Sequence

from enforcer.schedule.demands import InstanceDemand
from enforcer.schedule.feasibility import fit_reason, milli
from enforcer.schedule.hosts import HostState

__all__ = ["HostLoad", "add_sizes", "demand_size"]


class HostLoad:
    """One host's bookkeeping during a single `schedule` call."""

    __slots__ = (
        "cpus", "free_cpus", "free_gpu_ids", "free_gpus", "free_memory", "gpu_order", "gpus_of",
        "id", "memory", "per_byte", "per_cpu", "placed", "ports", "reserved", "spread",
    )  # fmt: skip

    def __init__(self, host: HostState) -> None:
        self.id = host.id
        self.cpus = milli(host.cpus)
        self.memory = host.memory
        self.free_cpus = self.cpus
        self.free_memory = host.memory
        self.free_gpus = host.gpus
        self.free_gpu_ids = list(host.gpu_names)  # in the host's order
        self.gpu_order = {name: n for n, name in enumerate(host.gpu_names)}
        self.gpus_of: dict[str, tuple[str, ...]] = {}  # instance -> the GPUs assigned to it
        self.reserved: frozenset[str] = frozenset()  # GPUs instances had: given out last
        self.placed: dict[str, InstanceDemand] = {}
        self.ports: dict[str, str] = {}  # published host port -> the instance holding it
        self.spread: dict[tuple[str, str], int] = {}
        # Weights that make "share of CPUs + share of memory" a mean over the known dimensions.
        dims = (self.cpus > 0) + (self.memory > 0)
        self.per_cpu = 1 / (self.cpus * dims) if self.cpus > 0 else 0.0
        self.per_byte = 1 / (self.memory * dims) if self.memory > 0 else 0.0

    def add(self, d: InstanceDemand, sign: int = 1, gpus: Sequence[str] = ()) -> None:
        """Place `d` here (`sign` 1) or take it away again (-1). A placed instance gets its
        GPUs: `gpus` where each of them is free (the ones it had), else the first free ones."""
        self.free_cpus -= sign * milli(d.resources.cpus)
        self.free_memory -= sign * d.resources.memory
        self.free_gpus -= sign * d.placement.gpus
        key = (d.app, d.service)
        self.spread[key] = self.spread.get(key, 0) + sign
        if sign > 0:
            self.placed[d.instance_id] = d
            self.ports.update((port, d.instance_id) for port in d.host_ports)
            self._assign_gpus(d, gpus)
        else:
            del self.placed[d.instance_id]
            for port in d.host_ports:
                self.ports.pop(port, None)
            freed = self.gpus_of.pop(d.instance_id, ())
            self.free_gpu_ids = sorted([*self.free_gpu_ids, *freed], key=self.gpu_order.__getitem__)

    def _assign_gpus(self, d: InstanceDemand, wanted: Sequence[str]) -> None:
        count = d.placement.gpus
        if count <= 0:
            return
        keep = len(wanted) == count and all(g in self.free_gpu_ids for g in wanted)
        if keep:
            chosen = list(wanted)
        else:  # GPUs that no instance had first, so that they can keep theirs
            free = sorted(self.free_gpu_ids, key=lambda g: g in self.reserved)
            chosen = sorted(free[:count], key=self.gpu_order.__getitem__)
        self.gpus_of[d.instance_id] = tuple(chosen)
        self.free_gpu_ids = [g for g in self.free_gpu_ids if g not in chosen]

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


def demand_size(d: InstanceDemand) -> tuple[int, int, int]:
    return (milli(d.resources.cpus), d.resources.memory, d.placement.gpus)


def add_sizes(
    amounts: tuple[int, int, int], demands: Sequence[InstanceDemand], sign: int
) -> tuple[int, int, int]:
    """`amounts` (CPUs in thousandths, bytes, GPUs) plus (or minus) what `demands` use."""
    cpus, memory, gpus = amounts
    for d in demands:
        size = demand_size(d)
        cpus, memory, gpus = cpus + sign * size[0], memory + sign * size[1], gpus + sign * size[2]
    return (cpus, memory, gpus)
