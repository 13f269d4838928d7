"""Deployments: the spec of DESIGN.md, which sites get what, and the rollout as pure functions.

Nothing here does I/O. `parse_deployment` validates a document and reports every error with its
path; `applications_for_site` is the placement; `start_rollout` and `advance` move a rollout over
(deployment, site views, now): canary sites first, then batches of ``sites-in-parallel`` sites,
each batch done once every site in it reports all instances of the application ready for
``healthy-time`` (``canary-healthy-time`` for canaries).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from enforcer.shared import labels as label_expr
from enforcer.shared.units import format_duration, parse_duration

__all__ = [
    "DeploymentError",
    "DeploymentSpec",
    "OnFailure",
    "Phase",
    "Rollout",
    "SiteView",
    "Strategy",
    "advance",
    "applications_for_site",
    "deployment_to_document",
    "observe_status",
    "parse_deployment",
    "start_rollout",
]

NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
LATEST = "latest"
FAILED_STATES = frozenset({"failed", "image-pull-failed"})  # enforcer instance states


class DeploymentError(ValueError):
    """A deployment document with errors; `errors` holds (path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in errors))
        self.errors = errors


class OnFailure(enum.Enum):
    ROLLBACK = "rollback"
    PAUSE = "pause"


@dataclass(frozen=True)
class Strategy:
    canary_sites: str = ""  # label expression; "" means no canary phase
    canary_healthy_time: float = 60.0
    sites_in_parallel: int = 0  # 0: all matching sites at once
    healthy_time: float = 60.0
    on_failure: OnFailure = OnFailure.ROLLBACK


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    application: str
    version: str  # exact version or "latest"
    match_site_labels: str = ""
    all_sites: bool = False
    strategy: Strategy = field(default_factory=Strategy)

    def matches(self, site_labels: Mapping[str, str]) -> bool:
        if self.all_sites:
            return True
        return label_expr.parse(self.match_site_labels).matches(site_labels)


_TOP = {"name", "application", "version", "placement", "strategy"}
_PLACEMENT = {"match-site-labels", "all-sites"}
_STRATEGY = {
    "canary-sites",
    "canary-healthy-time",
    "sites-in-parallel",
    "healthy-time",
    "on-failure",
}


def parse_deployment(doc: Any) -> DeploymentSpec:
    """Validate a deployment document (parsed YAML or JSON); raises DeploymentError."""
    errors: list[tuple[str, str]] = []
    if not isinstance(doc, dict):
        raise DeploymentError([("", "a deployment must be a mapping")])
    for key in doc:
        if key not in _TOP:
            errors.append((str(key), "unknown field"))

    def text(container: Mapping[str, Any], key: str, path: str, required: bool) -> str:
        if key not in container:
            if required:
                errors.append((path, "is required"))
            return ""
        value = container[key]
        if not isinstance(value, str) or not value:
            errors.append((path, f"{value!r} is not a non-empty string"))
            return ""
        return value

    name = text(doc, "name", "name", True)
    if name and (len(name) > 63 or not NAME.fullmatch(name)):
        errors.append(("name", f'"{name}" is not a DNS label (a-z, 0-9 and -, at most 63)'))
    application = text(doc, "application", "application", True)
    if application and not NAME.fullmatch(application):
        errors.append(("application", f'"{application}" is not an application name'))
    version = text(doc, "version", "version", False) or LATEST

    match, all_sites = "", False
    placement = doc.get("placement")
    if placement is None:
        errors.append(("placement", 'is required: give "match-site-labels" or "all-sites: true"'))
    elif not isinstance(placement, dict):
        errors.append(("placement", "must be a mapping"))
    else:
        for key in placement:
            if key not in _PLACEMENT:
                errors.append((f"placement.{key}", "unknown field"))
        if "all-sites" in placement:
            if not isinstance(placement["all-sites"], bool):
                errors.append(("placement.all-sites", "must be true or false"))
            else:
                all_sites = placement["all-sites"]
        if "match-site-labels" in placement:
            match = _expression(
                placement["match-site-labels"], "placement.match-site-labels", errors
            )
            if all_sites:
                errors.append(("placement", 'give either "match-site-labels" or "all-sites"'))
        elif not all_sites and not any(p.startswith("placement") for p, _ in errors):
            errors.append(("placement", 'give "match-site-labels" or "all-sites: true"'))

    strategy = Strategy()
    raw = doc.get("strategy", {})
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(("strategy", "must be a mapping"))
        raw = {}
    for key in raw:
        if key not in _STRATEGY:
            errors.append((f"strategy.{key}", "unknown field"))
    if "canary-sites" in raw:
        strategy = replace(
            strategy, canary_sites=_expression(raw["canary-sites"], "strategy.canary-sites", errors)
        )
    healthy = _duration(raw, "healthy-time", strategy.healthy_time, errors)
    canary_healthy = _duration(raw, "canary-healthy-time", healthy, errors)
    parallel = raw.get("sites-in-parallel", 0)
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 0:
        errors.append(("strategy.sites-in-parallel", f"{parallel!r} is not a positive integer"))
        parallel = 0
    on_failure = OnFailure.ROLLBACK
    if "on-failure" in raw:
        try:
            on_failure = OnFailure(raw["on-failure"])
        except ValueError:
            errors.append(
                ("strategy.on-failure", f'{raw["on-failure"]!r} is not one of "rollback", "pause"')
            )
    if errors:
        raise DeploymentError(errors)
    return DeploymentSpec(
        name=name,
        application=application,
        version=version,
        match_site_labels=match,
        all_sites=all_sites,
        strategy=replace(
            strategy,
            healthy_time=healthy,
            canary_healthy_time=canary_healthy,
            sites_in_parallel=parallel,
            on_failure=on_failure,
        ),
    )


def _expression(value: Any, path: str, errors: list[tuple[str, str]]) -> str:
    if not isinstance(value, str):
        errors.append((path, f"{value!r} is not a label expression"))
        return ""
    try:
        label_expr.parse(value)
    except label_expr.LabelSyntaxError as e:
        errors.append((path, f"{e.message} at column {e.column} of {value!r}"))
        return ""
    return value


def _duration(
    raw: Mapping[str, Any], key: str, default: float, errors: list[tuple[str, str]]
) -> float:
    if key not in raw:
        return default
    try:
        return parse_duration(raw[key])
    except ValueError as e:
        errors.append((f"strategy.{key}", str(e)))
        return default


def deployment_to_document(spec: DeploymentSpec) -> dict[str, Any]:
    """The canonical document of `spec` (all defaults spelled out)."""
    placement: dict[str, Any] = (
        {"all-sites": True} if spec.all_sites else {"match-site-labels": spec.match_site_labels}
    )
    s = spec.strategy
    strategy: dict[str, Any] = {
        "canary-healthy-time": format_duration(s.canary_healthy_time),
        "sites-in-parallel": s.sites_in_parallel,
        "healthy-time": format_duration(s.healthy_time),
        "on-failure": s.on_failure.value,
    }
    if s.canary_sites:
        strategy["canary-sites"] = s.canary_sites
    return {
        "name": spec.name,
        "application": spec.application,
        "version": spec.version,
        "placement": placement,
        "strategy": strategy,
    }


# --- placement ----------------------------------------------------------------------------


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


# --- rollout -------------------------------------------------------------------------------


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
