"""Hosts as the scheduler sees them (pure).

`HostInfo` is what a host offers: its id, labels (system labels included), device inventory
and capacity; `enforcer.site.hostinfo` gathers it for this host. `HostState` is the part the
scheduler decides on, and `host_state` makes one from the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from enforcer.devices.inventory import Inventory
from enforcer.devices.rules import BUILTIN_LABELS

__all__ = ["HostInfo", "HostState", "host_state"]


@dataclass(frozen=True)
class HostInfo:
    """One host: what it is (id, labels) and what it has (devices, GPUs, CPUs, memory)."""

    id: str
    labels: tuple[tuple[str, str], ...]  # sorted (key, value) pairs, system labels included
    inventory: Inventory = field(default_factory=Inventory)
    cpus: float = 0.0
    memory: int = 0  # bytes

    @property
    def label_map(self) -> Mapping[str, str]:
        return MappingProxyType(dict(self.labels))


@dataclass(frozen=True)
class HostState:
    """A host as the scheduler sees it."""

    id: str
    labels: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs
    device_labels: frozenset[str] = frozenset()  # labels of the devices it has
    gpus: int = 0
    cpus: float = 0.0
    memory: int = 0  # bytes
    # Device labels its rules (and the built-ins) can give, present or not; empty: unknown.
    defined_device_labels: frozenset[str] = frozenset()
    # Its GPUs by a name that stays while the GPU does (`Gpu.id`: the PCI slot); empty: the
    # GPUs are only counted, and are named "0", "1" ...
    gpu_ids: tuple[str, ...] = ()

    @property
    def label_map(self) -> Mapping[str, str]:
        return MappingProxyType(dict(self.labels))

    @property
    def gpu_names(self) -> tuple[str, ...]:
        """The names the scheduler assigns GPUs by."""
        return self.gpu_ids or tuple(str(n) for n in range(self.gpus))


def host_state(info: HostInfo) -> HostState:
    return HostState(
        id=info.id,
        labels=info.labels,
        device_labels=info.inventory.labels,
        gpus=len(info.inventory.gpus),
        cpus=info.cpus,
        memory=info.memory,
        defined_device_labels=info.inventory.defined_labels | BUILTIN_LABELS,
        gpu_ids=tuple(gpu.id for gpu in info.inventory.gpus),
    )
