"""What an instance's devices become in Docker (pure): device nodes and NVIDIA device requests.

The scheduler assigns GPUs by name (`Gpu.id`, `enforcer.schedule.scheduler.Schedule.gpus`);
`gpu_passthrough` turns the names into what Docker takes: the device ids of NVIDIA GPUs (for
a device request) and the render nodes of every other GPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from enforcer.devices.inventory import Inventory
from enforcer.shared.spec.model import Placement

__all__ = [
    "GpuPassthrough",
    "device_nodes_for",
    "docker_devices",
    "gpu_passthrough",
    "gpu_request",
    "gpu_requests_for",
]


@dataclass(frozen=True)
class GpuPassthrough:
    """The GPUs assigned to one instance, as Docker takes them."""

    assigned: tuple[str, ...] = ()  # their names (`Gpu.id`), as the scheduler gave them
    nodes: tuple[str, ...] = ()  # render nodes of the GPUs that are not NVIDIA's, sorted
    nvidia_ids: tuple[str, ...] = ()  # device ids of NVIDIA GPUs (N of /dev/nvidiaN)


def gpu_passthrough(inventory: Inventory, assigned: Sequence[str]) -> GpuPassthrough:
    """How to pass the GPUs named `assigned` into a container; raises ValueError for a name
    that is no GPU of `inventory` (it went between scheduling and now)."""
    by_id = {gpu.id: gpu for gpu in inventory.gpus}
    nodes: set[str] = set()
    nvidia: list[str] = []
    for name in assigned:
        gpu = by_id.get(name)
        if gpu is None:
            raise ValueError(f"GPU {name} is not on this host (any more)")
        minor = gpu.nvidia_minor
        if gpu.nvidia_runtime and minor is not None:
            nvidia.append(str(minor))
        else:
            nodes.update(n for n in gpu.nodes if not n.startswith("/dev/nvidia"))
    return GpuPassthrough(tuple(assigned), tuple(sorted(nodes)), tuple(nvidia))


def device_nodes_for(
    placement: Placement, inventory: Inventory, gpus: GpuPassthrough | None = None
) -> list[str]:
    """The nodes to pass into an instance with `placement` on the host of `inventory`.

    Every node of every label in ``placement.devices``, and the render nodes of its GPUs:
    those of `gpus` (the GPUs assigned to it); without, for ``gpus: N`` on a host whose GPUs
    are not driven by NVIDIA's driver, the render nodes of its first N such GPUs. NVIDIA GPUs
    are passed as device requests instead (`gpu_requests_for`).
    """
    nodes: set[str] = set()
    for label in placement.devices:
        nodes.update(inventory.nodes_for(label))
    if gpus is not None:
        nodes.update(gpus.nodes)
    elif placement.gpus > 0:
        plain = [gpu for gpu in inventory.gpus if not gpu.nvidia_runtime]
        for gpu in plain[: placement.gpus]:
            nodes.update(gpu.nodes)
    return sorted(nodes)


def docker_devices(nodes: Iterable[str]) -> list[str]:
    """``devices=`` for the Docker SDK: each node at the same path, read, write and mknod."""
    return [f"{node}:{node}:rwm" for node in nodes]


def gpu_request(count: int, device_ids: Sequence[str] = ()) -> dict[str, Any]:
    """Keyword arguments of ``docker.types.DeviceRequest`` for `count` NVIDIA GPUs.

    With `device_ids` (the N of /dev/nvidiaN, or GPU UUIDs) those GPUs exactly; Docker gives a
    bare count the first `count` GPUs, so two instances asking for one GPU each would share
    GPU 0 — pass ids when a host runs several GPU instances.
    """
    if count < 0:
        raise ValueError(f"a GPU count must not be negative, got {count}")
    if device_ids:
        if len(device_ids) != count:
            raise ValueError(f"asked for {count} GPU(s) but named {len(device_ids)}")
        return {"driver": "nvidia", "device_ids": list(device_ids), "capabilities": [["gpu"]]}
    return {"driver": "nvidia", "count": count, "capabilities": [["gpu"]]}


def gpu_requests_for(
    placement: Placement, inventory: Inventory, device_ids: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """``device_requests=`` for an instance: one NVIDIA request, or none (no GPUs asked, or
    the host's GPUs are not NVIDIA's, whose nodes `device_nodes_for` passes instead)."""
    if placement.gpus <= 0 or not any(gpu.nvidia_runtime for gpu in inventory.gpus):
        return []
    return [gpu_request(placement.gpus, device_ids)]
