"""Placement: which application versions a site should run, from the deployments matching its
labels and where their rollouts stand (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from control.fleet.deployments import DeploymentSpec
from control.fleet.rollout import Rollout


@dataclass(frozen=True)
class Placed:
    deployment: str
    application: str
    version: str
    tenant: str


def applications_for_site(
    site_labels: Mapping[str, str],
    deployments: Sequence[tuple[DeploymentSpec, Rollout | None, str]],
    eligible: Mapping[str, bool] | None = None,
) -> list[Placed]:
    """What a site with `site_labels` should run: one entry per application, by name.

    `deployments` are (spec, rollout, owning tenant); `eligible` says per tenant whether the
    site may run its deployments (absent: yes). When two deployments place the same
    application on a site, the one whose name sorts first wins, so the answer is stable.
    """
    site = site_labels.get("system/name", "")
    placed: dict[str, Placed] = {}
    for spec, rollout, tenant in sorted(deployments, key=lambda d: d[0].name):
        if eligible is not None and not eligible.get(tenant, True):
            continue
        if spec.application in placed or not spec.matches(site_labels):
            continue
        version = rollout.version_for(site) if rollout is not None else None
        if version is not None:
            placed[spec.application] = Placed(spec.name, spec.application, version, tenant)
    return sorted(placed.values(), key=lambda p: p.application)
