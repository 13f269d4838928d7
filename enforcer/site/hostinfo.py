"""What this host offers the scheduler: its id, labels, devices, GPUs and capacity.

Host labels are those of ``[host] labels`` in enforcer.toml plus the system labels of
DESIGN.md ("Label expressions"): ``system/hostname``, ``system/arch`` (Docker's names: amd64,
arm64 ...), ``system/os`` and, on a host with GPUs, ``system/gpu`` (nvidia, intel, amd, or
mixed). Capacity is every CPU and all memory, as psutil reports them.
"""

from __future__ import annotations

import platform
import socket
from collections.abc import Mapping

import psutil

from enforcer.devices.inventory import Inventory
from enforcer.schedule.hosts import HostInfo

__all__ = ["SYSTEM_PREFIX", "HostInfo", "default_host_id", "gather_host_info", "system_labels"]

SYSTEM_PREFIX = "system/"
MACHINE_ID = "/etc/machine-id"

_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def system_labels(inventory: Inventory, hostname: str | None = None) -> dict[str, str]:
    """The ``system/`` labels of a host with `inventory`."""
    machine = platform.machine().lower()
    labels = {
        "system/hostname": hostname if hostname is not None else socket.gethostname(),
        "system/arch": _ARCH.get(machine, machine or "unknown"),
        "system/os": platform.system().lower() or "unknown",
    }
    kinds = sorted({gpu.kind for gpu in inventory.gpus})
    if kinds:
        labels["system/gpu"] = kinds[0] if len(kinds) == 1 else "mixed"
    return labels


def gather_host_info(
    host_id: str, config_labels: Mapping[str, str], inventory: Inventory
) -> HostInfo:
    """This host as the scheduler sees it; raises ValueError when the config sets a
    ``system/`` label (those are Edgeward's)."""
    if not host_id:
        raise ValueError("host.id: must not be empty")
    reserved = sorted(key for key in config_labels if key.startswith(SYSTEM_PREFIX))
    if reserved:
        raise ValueError(
            f'host.labels: "{reserved[0]}" is reserved: labels under "system/" are set by Edgeward'
        )
    labels = dict(config_labels)
    labels.update(system_labels(inventory))
    return HostInfo(
        id=host_id,
        labels=tuple(sorted(labels.items())),
        inventory=inventory,
        cpus=float(psutil.cpu_count(logical=True) or 1),
        memory=int(psutil.virtual_memory().total),
    )


def default_host_id(machine_id_path: str = MACHINE_ID) -> str:
    """The host id when ``[host] id`` is empty: /etc/machine-id, else the short hostname."""
    try:
        with open(machine_id_path, encoding="ascii", errors="replace") as file:
            machine_id = file.read().strip()
    except OSError:
        machine_id = ""
    if machine_id and machine_id != "uninitialized":
        return machine_id
    return socket.gethostname().split(".", 1)[0] or "localhost"
