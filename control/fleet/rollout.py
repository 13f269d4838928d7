"""The rollout of a deployment as pure functions over (deployment, site views, now).

`start_rollout` and `advance` move a rollout: canary sites first, then batches of
``sites-in-parallel`` sites, each batch done once every site in it reports all instances of
the application ready for ``healthy-time`` (``canary-healthy-time`` for canaries); a failure
rolls back or pauses. `observe_status` reads readiness and failures from a site's status.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from control.fleet.deployments import DeploymentSpec, OnFailure
from enforcer.shared import labels as label_expr
from enforcer.shared.units import format_duration

__all__ = [
    "Phase",
    "Rollout",
    "RolloutError",
    "SiteView",
    "advance",
    "pause",
    "resume",
    "roll_back",
    "site_health",
    "start_rollout",
]

Action = Callable[["Rollout", float], "Rollout"]  # an operator's: pause, resume, roll back
HISTORY = 20  # earlier rollouts a deployment remembers
FAILED_STATES = frozenset({"failed", "image-pull-failed"})  # enforcer instance states
CRASH_LOOP_RESTARTS = 3  # restarts after which an instance in backoff fails its site


class RolloutError(ValueError):
    """An operator's action that does not apply to the rollout as it stands."""


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
    started: float = 0.0  # when this rollout began
    resume_to: Phase | None = None  # the phase a pause interrupted
    history: tuple[Mapping[str, Any], ...] = ()  # earlier rollouts, oldest first

    def version_for(self, site: str) -> str | None:
        """The version `site` should run now, or None for none."""
        if self.phase is Phase.DONE or (
            site in self.updated and self.phase is not Phase.ROLLED_BACK
        ):
            return self.target
        return self.baseline.get(site)

    def summary(self, now: float) -> dict[str, Any]:
        """This rollout as a line of history; one that never finished was superseded."""
        return {
            "target": self.target,
            "phase": self.phase.value if self.phase.finished else "superseded",
            "started": self.started,
            "ended": self.since if self.phase.finished else now,
            "sites": len(self.updated),
            "message": self.message,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "phase": self.phase.value,
            "baseline": dict(self.baseline),
            "updated": sorted(self.updated),
            "since": self.since,
            "message": self.message,
            "started": self.started,
            "resume-to": self.resume_to.value if self.resume_to else None,
            "history": [dict(h) for h in self.history],
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> Rollout:
        resume_to = doc.get("resume-to")
        return Rollout(
            target=doc["target"],
            phase=Phase(doc["phase"]),
            baseline=dict(doc.get("baseline", {})),
            updated=frozenset(doc.get("updated", [])),
            since=doc.get("since", 0.0),
            message=doc.get("message", ""),
            started=doc.get("started", doc.get("since", 0.0)),
            resume_to=Phase(resume_to) if resume_to else None,
            history=tuple(doc.get("history", ())),
        )


@dataclass(frozen=True)
class SiteView:
    """What control knows of one site for one deployment's application."""

    name: str
    labels: Mapping[str, str]
    in_sync: bool = False  # applied the site's current desired revision
    ready_since: float | None = None  # all instances of the application ready since
    failed: str = ""  # why the application failed on this site, "" if it did not
    online: bool = True  # its link to control is up (a long-poll or a recent contact)


def start_rollout(
    previous: Rollout | None, target: str, sites: Sequence[str], now: float
) -> Rollout:
    """A new rollout of `target` whose baseline is what each of `sites` runs under `previous`."""
    baseline: dict[str, str] = {}
    history: tuple[Mapping[str, Any], ...] = ()
    if previous is not None:
        history = (*previous.history, previous.summary(now))[-HISTORY:]
        for site in sites:
            version = previous.version_for(site)
            if version is not None:
                baseline[site] = version
    return Rollout(target=target, baseline=baseline, since=now, started=now, history=history)


def pause(rollout: Rollout, now: float) -> Rollout:
    """An operator's pause: no site moves until `resume`."""
    if rollout.phase.finished:
        raise RolloutError(f"the rollout of {rollout.target} is {rollout.phase.value}: "
                           "there is nothing to pause")  # fmt: skip
    return replace(rollout, phase=Phase.PAUSED, resume_to=rollout.phase, since=now,
                   message="paused by an operator")  # fmt: skip


def resume(rollout: Rollout, now: float) -> Rollout:
    """Go on from where a pause (an operator's, or `on-failure: pause`) stopped."""
    if rollout.phase is not Phase.PAUSED:
        raise RolloutError(f"the rollout of {rollout.target} is {rollout.phase.value}, not paused")
    return replace(rollout, phase=rollout.resume_to or Phase.ROLLING, resume_to=None, since=now,
                   message="resumed by an operator")  # fmt: skip


def roll_back(rollout: Rollout, now: float, why: str) -> Rollout:
    """Every site that moved goes back to the version it ran before."""
    if rollout.phase is Phase.ROLLED_BACK:
        raise RolloutError(f"the rollout of {rollout.target} is rolled back already")
    if not rollout.baseline:
        raise RolloutError(f"no site ran a version before {rollout.target}: "
                           "there is nothing to roll back to")  # fmt: skip
    return replace(rollout, phase=Phase.ROLLED_BACK, resume_to=None, since=now, message=why)


def _batch_size(spec: DeploymentSpec, remaining: int) -> int:
    n = spec.strategy.sites_in_parallel
    return remaining if n <= 0 else min(n, remaining)


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _failure(spec: DeploymentSpec, rollout: Rollout, site: str, reason: str, now: float) -> Rollout:
    message = f"site {site} failed: {reason}"
    if spec.strategy.on_failure is OnFailure.ROLLBACK:
        # with no earlier version, back means without the application
        back = "rolled back" if rollout.baseline else "rolled back (no earlier version: removed)"
        return replace(rollout, phase=Phase.ROLLED_BACK, since=now, message=f"{message}; {back}")
    return replace(rollout, phase=Phase.PAUSED, resume_to=rollout.phase, since=now,
                   message=message + "; paused")  # fmt: skip


def advance(
    spec: DeploymentSpec, rollout: Rollout, sites: Sequence[SiteView], now: float
) -> Rollout:
    """The rollout after looking at `sites` (all sites the deployment may place on) at `now`.

    A site counts as failed when it reports the application failed, or when it is in sync and
    online but not all ready `ready-timeout` after its batch began. An offline site is waiting,
    never failed: canaries are waited for; in later batches it does not hold the rollout up and
    gets the version the deployment is at when it returns.
    """
    if rollout.phase.finished:
        return rollout
    matching = {s.name: s for s in sites if spec.matches(s.labels)}
    current = sorted(n for n in rollout.updated if n in matching)
    gate = spec.strategy.ready_timeout
    for name in current:
        site = matching[name]
        if not site.online:
            continue
        if site.failed:
            return _failure(spec, rollout, name, site.failed, now)
        if site.in_sync and site.ready_since is None and now - rollout.since > gate:
            reason = f"not ready {format_duration(gate)} after it was updated"
            return _failure(spec, rollout, name, reason, now)
    if rollout.phase is Phase.ROLLING and spec.strategy.sites_in_parallel <= 0:
        # all at once: a site that starts matching mid-rollout joins at once
        joining = {n for n in matching if n not in rollout.updated}
        if joining:
            rollout = replace(rollout, updated=rollout.updated | joining)
            current = sorted(n for n in rollout.updated if n in matching)
    canary = rollout.phase is Phase.CANARY
    healthy_time = spec.strategy.canary_healthy_time if canary else spec.strategy.healthy_time
    waiting = [
        n
        for n in current
        if (canary or matching[n].online) and not _healthy(matching[n], healthy_time, now)
    ]
    offline = [n for n in current if not matching[n].online]
    if waiting:
        message = f"waiting for {_shown(waiting)} to be ready for {format_duration(healthy_time)}"
        if offline:
            message += f" ({_shown(offline)} offline)"
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
        if remaining:  # asked for a canary, and none is left: never roll without one
            return replace(
                rollout,
                phase=Phase.PAUSED,
                resume_to=Phase.ROLLING,
                since=now,
                message=f"no site matches canary-sites {spec.strategy.canary_sites!r}: paused "
                "before any site was updated (resume to roll out without a canary)",
            )
    late = f"; {_shown(offline)} offline: updated when back" if offline else ""
    if not remaining:
        return replace(rollout, phase=Phase.DONE, since=now, message=late.lstrip("; "))
    batch = remaining[: _batch_size(spec, len(remaining))]
    updated = rollout.updated | set(batch)
    left = len(remaining) - len(batch)
    return replace(
        rollout,
        phase=Phase.ROLLING,
        updated=updated,
        since=now,
        message=f"updating {len(batch)} site(s), {left} after them{late}",
    )


def site_health(site: SiteView, last_contact: float | None) -> tuple[str, float | None]:
    """(health, since) of one site for a deployment: offline (since its last contact), failed,
    healthy (all ready since), or waiting (not in sync yet, or not all ready)."""
    if not site.online:
        return "offline", last_contact
    if site.failed:
        return "failed", None
    if site.in_sync and site.ready_since is not None:
        return "healthy", site.ready_since
    return "waiting", None


def _healthy(site: SiteView, healthy_time: float, now: float) -> bool:
    return site.in_sync and site.ready_since is not None and now - site.ready_since >= healthy_time


def observe_status(
    previous: Mapping[str, float],
    instances: Sequence[Mapping[str, Any]],
    versions: Mapping[str, str],
    now: float,
    before: Sequence[Any] = (),
) -> tuple[dict[str, float], dict[str, str]]:
    """Ready-since times and failures per application from an in-sync site's instance list.

    `previous` are the ready-since times known so far, `versions` the version each application
    should run at the site. An application is ready when it has instances and all are ready
    (and report the expected version where they report one); it keeps its earlier ready-since
    time while it stays ready — and starts it again when an instance restarted since the site's
    report `before` (a crash-looping instance seen running twice was not ready in between).
    Failed: an instance that could not be created or pulled
    (FAILED_STATES), or that crash-loops (backoff after CRASH_LOOP_RESTARTS restarts), with
    the reason the site gave.
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
            restarted = any(_restarted(i, before) for i in group)
            ready[app] = now if restarted else previous.get(app, now)
        for i in group:  # an instance of another version is on its way out: not this one's fault
            why = _failed(i) if i.get("version", expected) == expected else ""
            if why:
                failed[app] = why
                break
    return ready, failed


def _restarted(instance: Mapping[str, Any], before: Sequence[Any]) -> bool:
    """Whether `instance` counts more restarts than in the report `before`."""
    ident = instance.get("id")
    earlier = next((b for b in before if isinstance(b, Mapping) and b.get("id") == ident), None)
    now_count, then_count = instance.get("restarts"), (earlier or {}).get("restarts")
    return isinstance(now_count, int) and isinstance(then_count, int) and now_count > then_count


def _failed(instance: Mapping[str, Any]) -> str:
    """Why `instance` counts as failed for a rollout, "" when it does not."""
    state, ident = instance.get("state"), instance.get("id", "?")
    reason = str(instance.get("reason") or "")
    if state in FAILED_STATES:
        return f"instance {ident} is {state}" + (f": {reason}" if reason else "")
    restarts = instance.get("restarts")
    if state == "backoff" and isinstance(restarts, int) and restarts >= CRASH_LOOP_RESTARTS:
        return f"instance {ident} is crash-looping ({restarts} restarts)" + (
            f": {reason}" if reason else ""
        )
    return ""
