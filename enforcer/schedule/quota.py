"""Tenant quotas at the site (pure): which placed instances fit their tenants' quotas.

Control checks a quota when a deployment is made; the site holds it too, so that a new
`latest` version, a lowered quota or a stale deployment cannot take a tenant over it. A quota
bounds what a tenant and its sub-tenants request on the site: the sum of cpus, memory and gpus
over their instances. Instances are admitted in order — those already running first, then by
scheduling order (priority, name) — and one that would go over stays pending with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from enforcer.schedule.demands import InstanceDemand
from enforcer.shared.units import format_size

RESOURCES = ("cpus", "memory", "gpus")


@dataclass(frozen=True)
class Quota:
    tenant: str
    members: frozenset[str]  # the tenant and its sub-tenants
    limits: Mapping[str, float]  # a missing resource is unlimited

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Quota:
        limits = {k: float(v) for k, v in dict(doc.get("quota") or {}).items() if k in RESOURCES}
        tenant = str(doc["tenant"])
        return cls(tenant, frozenset(map(str, doc.get("members") or [tenant])), limits)


def _request(d: InstanceDemand) -> dict[str, float]:
    return {
        "cpus": d.resources.cpus,
        "memory": float(d.resources.memory),
        "gpus": float(d.placement.gpus),
    }


def _describe(resource: str, amount: float) -> str:
    return format_size(int(amount)) if resource == "memory" else f"{amount:g}"


def admit(
    demands: Sequence[InstanceDemand], quotas: Sequence[Quota], running: frozenset[str]
) -> tuple[list[str], dict[str, str]]:
    """(admitted instance ids, {instance id: reason}) for instances of `demands`."""
    used: dict[str, dict[str, float]] = {q.tenant: dict.fromkeys(RESOURCES, 0.0) for q in quotas}
    admitted: list[str] = []
    refused: dict[str, str] = {}
    for d in sorted(demands, key=lambda d: (d.instance_id not in running, d.order)):
        request = _request(d)
        reason = ""
        for q in quotas:
            if d.tenant not in q.members:
                continue
            for resource, limit in sorted(q.limits.items()):
                total = used[q.tenant][resource] + request[resource]
                if request[resource] and total > limit + 1e-9:
                    reason = (
                        f"tenant {q.tenant} quota: {resource} would be "
                        f"{_describe(resource, total)}, over {_describe(resource, limit)}"
                    )
                    break
            if reason:
                break
        if reason:
            refused[d.instance_id] = reason
            continue
        for q in quotas:
            if d.tenant in q.members:
                for resource in RESOURCES:
                    used[q.tenant][resource] += request[resource]
        admitted.append(d.instance_id)
    return admitted, refused
