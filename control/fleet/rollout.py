"""The rollout of a deployment as pure functions over (deployment, site views, now).

`start_rollout` and `advance` move a rollout: canary sites first, then batches of
``sites-in-parallel`` sites, each batch done once every site in it reports all instances of
the application ready for ``healthy-time`` (``canary-healthy-time`` for canaries); a failure
rolls back or pauses. `observe_status` reads readiness and failures from a site's status.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from control.fleet.deployments import DeploymentSpec, OnFailure
from enforcer.shared import labels as label_expr
from enforcer.shared.units import format_duration

__all__ = ["Phase", "Rollout", "SiteView", "advance", "observe_status", "start_rollout"]

FAILED_STATES = frozenset({"failed", "image-pull-failed"})  # enforcer instance states


class Phase(enum.Enum):
    STARTING = "starting"
    CANARY = "canary"
    ROLLING = "rolling"
    DONE = "done"
    PAUSED = "paused"
    ROLLED_BACK = "rolled-back"

    @property
    def finished(self) -> bool:
        return self in (Phase.DONE, Phase.PAUSED, Phase.ROLLED_BACK)


@dataclass(frozen=True)
class Rollout:
    """Where a deployment's rollout of `target` stands."""

    target: str
    phase: Phase = Phase.STARTING
    baseline: Mapping[str, str] = field(default_factory=dict)  # site -> version before
    updated: frozenset[str] = frozenset()  # sites switched to target
    since: float = 0.0  # when the current phase or batch started
    message: str = ""

    def version_for(self, site: str) -> str | None:
        """The version `site` should run now, or None for none."""
        if self.phase is Phase.DONE or (
            site in self.updated and self.phase is not Phase.ROLLED_BACK
        ):
            return self.target
        return self.baseline.get(site)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "phase": self.phase.value,
            "baseline": dict(self.baseline),
            "updated": sorted(self.updated),
            "since": self.since,
            "message": self.message,
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> Rollout:
        return Rollout(
            target=doc["target"],
            phase=Phase(doc["phase"]),
            baseline=dict(doc.get("baseline", {})),
            updated=frozenset(doc.get("updated", [])),
            since=doc.get("since", 0.0),
            message=doc.get("message", ""),
        )


@dataclass(frozen=True)
class SiteView:
    """What control knows of one site for one deployment's application."""

    name: str
    labels: Mapping[str, str]
    in_sync: bool = False  # applied the site's current desired revision
    ready_since: float | None = None  # all instances of the application ready since
    failed: str = ""  # why the application failed on this site, "" if it did not


def start_rollout(
    previous: Rollout | None, target: str, sites: Sequence[str], now: float
) -> Rollout:
    """A new rollout of `target` whose baseline is what each of `sites` runs under `previous`."""
    baseline: dict[str, str] = {}
    if previous is not None:
        for site in sites:
            version = previous.version_for(site)
            if version is not None:
                baseline[site] = version
    return Rollout(target=target, baseline=baseline, since=now)


def _batch_size(spec: DeploymentSpec, remaining: int) -> int:
    n = spec.strategy.sites_in_parallel
    return remaining if n <= 0 else min(n, remaining)


def advance(
    spec: DeploymentSpec, rollout: Rollout, sites: Sequence[SiteView], now: float
) -> Rollout:
    """The rollout after looking at `sites` (all sites the deployment may place on) at `now`."""
    if rollout.phase.finished:
        return rollout
    matching = {s.name: s for s in sites if spec.matches(s.labels)}
    current = sorted(n for n in rollout.updated if n in matching)
    for name in current:
        reason = matching[name].failed
        if reason:
            message = f"site {name} failed: {reason}"
            if spec.strategy.on_failure is OnFailure.ROLLBACK:
                return replace(
                    rollout, phase=Phase.ROLLED_BACK, since=now, message=message + "; rolled back"
                )
            return replace(rollout, phase=Phase.PAUSED, since=now, message=message + "; paused")
    if rollout.phase is Phase.ROLLING and spec.strategy.sites_in_parallel <= 0:
        # all at once: a site that starts matching mid-rollout joins at once
        joining = {n for n in matching if n not in rollout.updated}
        if joining:
            rollout = replace(rollout, updated=rollout.updated | joining)
            current = sorted(n for n in rollout.updated if n in matching)
    healthy_time = (
        spec.strategy.canary_healthy_time
        if rollout.phase is Phase.CANARY
        else spec.strategy.healthy_time
    )
    waiting = [n for n in current if not _healthy(matching[n], healthy_time, now)]
    if waiting:
        shown = ", ".join(waiting[:5]) + (
            f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
        )
        message = f"waiting for {shown} to be ready for {format_duration(healthy_time)}"
        return rollout if message == rollout.message else replace(rollout, message=message)
    remaining = sorted(n for n in matching if n not in rollout.updated)
    if rollout.phase is Phase.STARTING and spec.strategy.canary_sites:
        canary_expr = label_expr.parse(spec.strategy.canary_sites)
        canaries = [n for n in remaining if canary_expr.matches(matching[n].labels)]
        if canaries:
            return replace(
                rollout,
                phase=Phase.CANARY,
                updated=rollout.updated | set(canaries),
                since=now,
                message=f"canary on {len(canaries)} site(s)",
            )
    if not remaining:
        return replace(rollout, phase=Phase.DONE, since=now, message="")
    batch = remaining[: _batch_size(spec, len(remaining))]
    updated = rollout.updated | set(batch)
    left = len(remaining) - len(batch)
    return replace(
        rollout,
        phase=Phase.ROLLING,
        updated=updated,
        since=now,
        message=f"updating {len(batch)} site(s), {left} after them",
    )


def _healthy(site: SiteView, healthy_time: float, now: float) -> bool:
    return site.in_sync and site.ready_since is not None and now - site.ready_since >= healthy_time


def observe_status(
    previous: Mapping[str, float],
    instances: Sequence[Mapping[str, Any]],
    versions: Mapping[str, str],
    now: float,
) -> tuple[dict[str, float], dict[str, str]]:
    """Ready-since times and failures per application from an in-sync site's instance list.

    `previous` are the ready-since times known so far, `versions` the version each application
    should run at the site. An application is ready when it has instances and all are ready
    (and report the expected version where they report one); it keeps its earlier ready-since
    time while it stays ready. Failed: an instance in a FAILED_STATES state.
    """
    by_app: dict[str, list[Mapping[str, Any]]] = {}
    for instance in instances:
        by_app.setdefault(str(instance.get("app", "")), []).append(instance)
    ready: dict[str, float] = {}
    failed: dict[str, str] = {}
    for app, group in by_app.items():
        if app not in versions:
            continue
        expected = versions[app]
        if all(bool(i.get("ready")) and i.get("version", expected) == expected for i in group):
            ready[app] = previous.get(app, now)
        bad = [i for i in group if i.get("state") in FAILED_STATES]
        if bad:
            failed[app] = f"instance {bad[0].get('id', '?')} is {bad[0].get('state')}"
    return ready, failed
