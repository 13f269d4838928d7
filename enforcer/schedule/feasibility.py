"""Whether a host can take a service instance, and why not (the scheduler's filter step).

Every check gives None (feasible) or a reason in the words of DESIGN.md: ``labels do not match
"zone = line-1"``, ``no device labelled camera``, ``needs 2 GPUs, has 1 free``, ``needs 512Mi
memory, 100Mi free``. Static checks (labels, devices, what the host has in total) do not change
while scheduling; the fit check compares a request with what is still free. CPUs are counted
in thousandths so that sums are exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from enforcer.schedule.hosts import HostState, host_state
from enforcer.shared.labels import Expr, LabelSyntaxError, parse
from enforcer.shared.spec.model import Placement, Resources
from enforcer.shared.units import format_size

__all__ = [
    "HostState",
    "describe_cpus",
    "describe_gpus",
    "describe_memory",
    "fit_reason",
    "host_state",
    "invalid_request",
    "label_expression",
    "milli",
    "static_reason",
]


def milli(cpus: float) -> int:
    """CPUs in thousandths, rounded."""
    return round(cpus * 1000)


def label_expression(text: str) -> Expr | LabelSyntaxError:
    """The parsed ``match-host-labels``, or the error that says why it does not parse."""
    try:
        return parse(text)
    except LabelSyntaxError as exc:
        return exc


def invalid_request(placement: Placement, resources: Resources) -> str | None:
    """Why a request can never be met whatever the hosts (negative or not a number)."""
    if placement.gpus < 0:
        return f"gpus must not be negative (got {placement.gpus})"
    if not math.isfinite(resources.cpus) or resources.cpus < 0:
        return f"cpus must be a finite number, 0 or more (got {resources.cpus:g})"
    if resources.memory < 0:
        return f"memory must not be negative (got {resources.memory})"
    return None


def describe_cpus(amount: int) -> str:
    """Thousandths of CPUs as text: "1 CPU", "0.5 CPUs"."""
    text = f"{amount / 1000:g}"
    return f"{text} CPU" if amount == 1000 else f"{text} CPUs"


def describe_memory(amount: int) -> str:
    """Bytes as text: "256Mi", "1.5Gi", "512.954Mi"; plain bytes where that would round."""
    if amount <= 0:
        return "0"
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if amount >= factor:
            text = f"{amount / factor:.3f}".rstrip("0").rstrip(".")
            if "." in text or amount % factor == 0:
                return text + unit
            break
    return format_size(amount)


def describe_gpus(amount: int) -> str:
    return "1 GPU" if amount == 1 else f"{amount} GPUs"


def static_reason(
    host: HostState,
    labels: Mapping[str, str],
    expr: Expr,
    text: str,
    placement: Placement,
    resources: Resources,
) -> str | None:
    """Why `host` (whose label map is `labels`) can never take the instance, or None."""
    if not expr.matches(labels):
        return f'labels do not match "{text}"'
    for label in placement.devices:
        if label not in host.device_labels:
            if host.defined_device_labels and label not in host.defined_device_labels:
                return f"no device labelled {label} (no device rule defines it)"
            return f"no device labelled {label}"
    if placement.gpus > host.gpus:
        return f"needs {describe_gpus(placement.gpus)}, has {host.gpus} in total"
    total = milli(host.cpus)
    if milli(resources.cpus) > total:
        return f"needs {describe_cpus(milli(resources.cpus))}, has {total / 1000:g} in total"
    if resources.memory > host.memory:
        needs, has = describe_memory(resources.memory), describe_memory(host.memory)
        return f"needs {needs} memory, has {has} in total"
    return None


def fit_reason(
    cpus: int, memory: int, gpus: int, free_cpus: int, free_memory: int, free_gpus: int
) -> str | None:
    """Why a request (`cpus` in thousandths) does not fit in what is free, or None."""
    if gpus > free_gpus:
        return f"needs {describe_gpus(gpus)}, has {max(free_gpus, 0)} free"
    if cpus > free_cpus:
        return f"needs {describe_cpus(cpus)}, {max(free_cpus, 0) / 1000:g} free"
    if memory > free_memory:
        return (
            f"needs {describe_memory(memory)} memory, {describe_memory(max(free_memory, 0))} free"
        )
    return None
