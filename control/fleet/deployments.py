"""Deployment specs (DESIGN.md): validation with every error and its path, and the canonical
document. Nothing here does I/O; the placement is `control.fleet.placement`, the rollout
`control.fleet.rollout`.
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
    "LATEST",
    "DeploymentError",
    "DeploymentSpec",
    "OnFailure",
    "Strategy",
    "deployment_to_document",
    "parse_deployment",
]

NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
LATEST = "latest"


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
    ready_timeout: float = 600.0  # a site updated this long ago and not all ready has failed


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
    "ready-timeout",
}


def parse_deployment(doc: Any, *, stored: bool = False) -> DeploymentSpec:
    """Validate a deployment document (parsed YAML or JSON); raises DeploymentError.
    `stored`: a document control stored earlier (which may spell all-at-once as
    `sites-in-parallel: 0`)."""
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
    elif parallel == 0 and "sites-in-parallel" in raw and not stored:
        errors.append(("strategy.sites-in-parallel",
                       "must be at least 1 (leave it out to update all matching sites at once)"))
    ready_timeout = _duration(raw, "ready-timeout", strategy.ready_timeout, errors)
    if ready_timeout <= 0:
        errors.append(("strategy.ready-timeout", "must be more than 0s"))
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
            ready_timeout=ready_timeout,
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
        "healthy-time": format_duration(s.healthy_time),
        "on-failure": s.on_failure.value,
        "ready-timeout": format_duration(s.ready_timeout),
    }
    if s.sites_in_parallel:  # left out: all matching sites at once
        strategy["sites-in-parallel"] = s.sites_in_parallel
    if s.canary_sites:
        strategy["canary-sites"] = s.canary_sites
    return {
        "name": spec.name,
        "application": spec.application,
        "version": spec.version,
        "placement": placement,
        "strategy": strategy,
    }


def canary_problem(spec: DeploymentSpec, site_labels: Sequence[Mapping[str, str]]) -> str:
    """Why `spec`'s canary expression cannot work on the sites it places on ("" when it can).

    A deployment that asks for canaries and places on sites none of which is a canary is
    refused rather than rolled out without one: a canary is what stops a bad build at one store.
    Placing on no site at all is fine (sites may enroll later).
    """
    if not spec.strategy.canary_sites or not site_labels:
        return ""
    expr = label_expr.parse(spec.strategy.canary_sites)
    if any(expr.matches(labels) for labels in site_labels):
        return ""
    return (
        f"{spec.strategy.canary_sites!r} matches none of the {len(site_labels)} site(s) this "
        "deployment places on: label a canary site, or leave canary-sites out"
    )
