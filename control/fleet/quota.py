"""Per-site tenant quotas: parsing ``cpus=2,memory=1Gi,gpus=0`` and checking a deployment (pure).

A quota bounds what a tenant's applications (its own and its sub-tenants') request on one site:
the sum over services of replicas x (cpus, memory, gpus). A service that runs one instance per
matching host counts once (control does not know a site's hosts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from control.fleet.deployments import LATEST, DeploymentSpec
from control.fleet.state import Fleet
from control.model import Invalid
from enforcer.shared.units import parse_size

RESOURCES = ("cpus", "memory", "gpus")


def parse_quota(text: str) -> dict[str, float]:
    """``cpus=2,memory=1Gi,gpus=0`` -> {"cpus": 2.0, "memory": 1073741824.0, "gpus": 0.0}."""
    quota: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in RESOURCES:
            raise Invalid(f"quota: {part!r} is not cpus=N, memory=SIZE or gpus=N")
        try:
            amount = float(parse_size(value.strip())) if key == "memory" else float(value)
        except (ValueError, TypeError) as e:
            raise Invalid(f"quota: {key}={value!r} is not a valid amount") from e
        if amount < 0:
            raise Invalid(f"quota: {key} must not be negative")
        quota[key] = amount
    return quota


def check_quota_document(quota: Any) -> dict[str, float]:
    if quota is None:
        return {}
    if isinstance(quota, str):
        return parse_quota(quota)
    if not isinstance(quota, dict) or set(quota) - set(RESOURCES):
        raise Invalid("quota must map cpus, memory and gpus to amounts")
    return parse_quota(",".join(f"{k}={v}" for k, v in quota.items()))


def app_usage(document: Mapping[str, Any]) -> dict[str, float]:
    """What one application requests on a site, from its canonical document."""
    usage = dict.fromkeys(RESOURCES, 0.0)
    for service in document.get("services") or []:
        count = int(service.get("replicas", 1)) if service.get("mode") == "replicated" else 1
        resources = service.get("resources") or {}
        usage["cpus"] += count * float(resources.get("cpus") or 0)
        memory = resources.get("memory")
        usage["memory"] += count * float(parse_size(memory) if memory else 0)
        usage["gpus"] += count * float((service.get("placement") or {}).get("gpus") or 0)
    return usage


def over_quota(
    quota: Mapping[str, float], usages: Iterable[Mapping[str, float]]
) -> tuple[str, float, float] | None:
    """The first resource whose total exceeds `quota`: (resource, total, limit); None if all fit."""
    totals = dict.fromkeys(RESOURCES, 0.0)
    for usage in usages:
        for key in RESOURCES:
            totals[key] += usage.get(key, 0.0)
    for key in RESOURCES:
        if key in quota and totals[key] > quota[key] + 1e-9:
            return key, totals[key], quota[key]
    return None


def describe(resource: str, amount: float) -> str:
    if resource == "memory":
        return f"{int(amount)} bytes"
    return f"{amount:g}"


def check_deployment_quota(fleet: Fleet, spec: DeploymentSpec, tenant: str) -> None:
    """422 naming the site and resource when `spec` would take `tenant` (or an ancestor with a
    quota) over its per-site quota on a site it matches."""
    version = fleet.latest_version(spec.application) if spec.version == LATEST else spec.version
    app = fleet.apps.get((spec.application, version or ""))
    limited = [t for t in fleet.ancestors(tenant) if fleet.tenants[t].quota]
    if app is None or not limited:
        return
    usage = app_usage(app.document)
    for site in sorted(fleet.sites.values(), key=lambda s: s.name):
        if not (fleet.eligible(site, tenant) and spec.matches(site.all_labels)):
            continue
        for limiter in limited:
            subtree = fleet.subtree(limiter)
            usages = [usage] + [
                app_usage(fleet.apps[(p.application, p.version)].document)
                for p in fleet.desired.placed(site.digest)
                if p.tenant in subtree
                and p.deployment != spec.name
                and (p.application, p.version) in fleet.apps
            ]
            over = over_quota(fleet.tenants[limiter].quota, usages)
            if over is not None:
                resource, total, limit = over
                raise Invalid(
                    f"deployment {spec.name}: on site {site.name} the {resource} of tenant "
                    f"{limiter} would be {describe(resource, total)}, over its quota of "
                    f"{describe(resource, limit)}",
                    [("placement", f"site {site.name}: {resource} over quota")],
                )
