"""This host's desired instances: the schedule, tenants' quotas and secrets, made concrete.

`desired_state` runs the scheduler over the site's applications, admits what the quotas allow,
and gives each placed instance its devices, GPUs and secrets. What cannot run yet (no host
fits, over quota, a secret or the vault key missing) is pending, with the reason.

Whatever an application holds, it can fail only its own instances: one that cannot be
computed (`InstanceError`, a GPU gone, any error of its secrets or devices), every instance
of a stored application that no longer validates (`BrokenApp`), and every instance of an
application the scheduler fails on are failed, with the reason; the others go on. A failed
instance's containers are left as they are (held) until it computes again or goes.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from enforcer.devices.inventory import Inventory
from enforcer.devices.passthrough import device_nodes_for, gpu_passthrough
from enforcer.facade import InstanceState, InstanceStatus
from enforcer.reconcile.instances import Context, DesiredInstance, InstanceError, desired_instance
from enforcer.schedule.hosts import HostInfo, host_state
from enforcer.schedule.quota import Quota, admit
from enforcer.schedule.scheduler import Schedule, schedule
from enforcer.secrets.files import SecretFiles
from enforcer.secrets.vaults import WAITING_FOR_KEY, SiteVaults, instance_secrets
from enforcer.shared.spec.model import Application, Mode
from enforcer.site.broken import BrokenApp, failed_instance

__all__ = ["DesiredState", "desired_state", "newly_waiting"]

log = logging.getLogger(__name__)


@dataclass
class DesiredState:
    desired: dict[str, DesiredInstance] = field(default_factory=dict)
    pending: dict[str, InstanceStatus] = field(default_factory=dict)
    held: dict[str, tuple[str, str]] = field(default_factory=dict)  # key missing: keep running
    warnings: tuple[str, ...] = ()
    gpus: dict[str, tuple[str, ...]] = field(default_factory=dict)  # instance -> its GPUs' ids


def desired_state(
    host: HostInfo,
    apps: Mapping[str, Application],
    current: Iterable[str],
    quotas: Sequence[Quota],
    vaults: SiteVaults,
    secret_files: SecretFiles,
    ctx: Context,
    instances_dir: Path,
    gpus: Mapping[str, Sequence[str]] | None = None,
    broken: Iterable[BrokenApp] = (),
    only: Collection[str] | None = None,
) -> DesiredState:
    """`current`: the instances desired on this host now (a running instance stays put);
    `gpus`: the GPUs they had (`DesiredState.gpus` of the last call), which they keep;
    `broken`: stored applications that no longer validate; `only` (a multi-host site): the
    instances the site's leader assigned to this host, the only ones placed or reported here.
    Raises nothing for what an application holds: what cannot be computed is failed, with
    the reason."""
    current = frozenset(current if only is None else only)
    sched, unschedulable = _schedule(host, apps, current, gpus)
    out = DesiredState(warnings=sched.warnings)
    failed: dict[str, InstanceStatus] = {}
    for b in broken:
        failed.update(b.statuses(host.id))
    for name, reason in unschedulable.items():
        failed.update(_failed_app(apps[name], host.id, reason))
    inv = host.inventory
    waiting: dict[str, list[str]] = {}  # placed, but a secret is not here (yet)
    placed = sched.on_host(host.id)
    if only is not None:
        placed = [iid for iid in placed if iid in only]
    if quotas:
        placed, over = admit([sched.demand(i) for i in placed], quotas, current)
        waiting.update((iid, [why]) for iid, why in over.items())
    for iid in placed:
        d = sched.demand(iid)
        app = apps[d.app]
        try:
            one = _instance(app, d.service, iid, ctx, inv, sched.gpus.get(iid, ()), vaults,
                            secret_files, instances_dir)  # fmt: skip
        except Exception as exc:  # whatever went wrong, it is this instance's alone
            reason = _reason(iid, exc)
            failed[iid] = failed_instance(iid, app.name, d.service, app.tenant, app.version, reason)
            continue
        if isinstance(one, DesiredInstance):
            out.desired[iid] = one
            continue
        waiting[iid] = [one]
        if one == WAITING_FOR_KEY:
            out.held[iid] = (app.tenant, app.name)
    # the GPUs of the placed instances; one that waits (its GPUs are gone for now, a GPU
    # driver loads late) keeps its claim until it runs again or goes
    waits = {d.instance_id for d in sched.demands} - set(placed)
    out.gpus = {iid: tuple(ids) for iid, ids in (gpus or {}).items() if iid in waits}
    out.gpus.update((iid, sched.gpus[iid]) for iid in placed if iid in sched.gpus)
    for iid, reasons in [*sched.pending.items(), *waiting.items()]:
        d = sched.demand(iid)
        out.pending[iid] = InstanceStatus(
            id=iid,
            app=d.app,
            service=d.service,
            tenant=d.tenant,
            host="",
            version=apps[d.app].version,
            state=InstanceState.PENDING,
            ready=False,
            restarts=0,
            reason="; ".join(reasons),
        )
    for iid, status in failed.items():  # its containers (if any) are left as they are
        out.pending[iid] = status
        out.held[iid] = (status.tenant, status.app)
    if only is not None:  # the other instances are other hosts' to run and report
        out.pending = {iid: s for iid, s in out.pending.items() if iid in only}
        out.held = {iid: h for iid, h in out.held.items() if iid in only}
    return out


def newly_waiting(
    before: Mapping[str, InstanceStatus], now: Mapping[str, InstanceStatus]
) -> list[InstanceStatus]:
    """The instances of `now` (pending or failed) that were not so `before`, for events."""
    return [
        s for iid, s in sorted(now.items()) if getattr(before.get(iid), "state", None) != s.state
    ]


def _instance(
    app: Application,
    service: str,
    iid: str,
    ctx: Context,
    inv: Inventory,
    gpus: Sequence[str],
    vaults: SiteVaults,
    secret_files: SecretFiles,
    instances_dir: Path,
) -> DesiredInstance | str:
    """The instance, or why it has to wait (a secret not here)."""
    svc = app.service(service)
    why, secrets = instance_secrets(app.tenant, svc, vaults, secret_files)
    if why:
        return why
    assigned = gpu_passthrough(inv, gpus)  # the GPUs the scheduler gave it
    return desired_instance(
        app,
        svc,
        iid,
        ctx,
        instances_dir=str(instances_dir),
        devices=tuple(device_nodes_for(svc.placement, inv, assigned)),
        gpus=assigned,
        secrets=secrets,
        secrets_dir=str(secret_files.root),
    )


def _schedule(
    host: HostInfo,
    apps: Mapping[str, Application],
    current: frozenset[str],
    gpus: Mapping[str, Sequence[str]] | None,
) -> tuple[Schedule, dict[str, str]]:
    """The schedule, and the applications (name -> why) that the scheduler fails on: found one
    by one when it fails on all of them together, so that the others are placed as usual."""
    ordered = sorted(apps.values(), key=lambda a: a.name)
    at = dict.fromkeys(current, host.id)

    def run(which: Sequence[Application]) -> Schedule:
        return schedule([host_state(host)], which, at, gpus)

    try:
        return run(ordered), {}
    except Exception:
        log.exception("scheduling failed; looking for the application it fails on")
    bad: dict[str, str] = {}
    for app in ordered:
        try:
            run([app])
        except Exception as exc:
            bad[app.name] = f"cannot be scheduled: {_reason(app.name, exc)}"
    rest = [a for a in ordered if a.name not in bad]
    try:
        return run(rest), bad
    except Exception as exc:  # only together: none of them is placed
        bad.update((a.name, f"cannot be scheduled: {_reason(a.name, exc)}") for a in rest)
        return run([]), bad


def _failed_app(app: Application, host: str, reason: str) -> dict[str, InstanceStatus]:
    out: dict[str, InstanceStatus] = {}
    for svc in app.services:
        prefix = f"{app.name}.{svc.name}."
        ids = [prefix + host] if svc.mode is Mode.ONE_PER_MATCHING_HOST else [
            f"{prefix}{n}" for n in range(max(svc.replicas, 0))
        ]  # fmt: skip
        for iid in ids:
            out[iid] = failed_instance(iid, app.name, svc.name, app.tenant, app.version, reason)
    return out or {
        app.name: failed_instance(app.name, app.name, "", app.tenant, app.version, reason)
    }


def _reason(what: str, exc: Exception) -> str:
    if isinstance(exc, InstanceError):
        return exc.reason
    if isinstance(exc, ValueError):
        return str(exc)
    log.error("%s: unexpected error", what, exc_info=exc)
    return f"internal error ({type(exc).__name__}: {exc}), see the log"
