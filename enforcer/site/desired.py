"""This host's desired instances: the schedule, tenants' quotas and secrets, made concrete.

`desired_state` runs the scheduler over the site's applications, admits what the quotas allow,
and gives each placed instance its devices, GPUs and secrets. What cannot run yet (no host
fits, over quota, a secret or the vault key missing) is pending, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from enforcer.devices.passthrough import device_nodes_for, gpu_passthrough
from enforcer.facade import InstanceState, InstanceStatus
from enforcer.reconcile.instances import Context, DesiredInstance, desired_instance
from enforcer.schedule.hosts import HostInfo, host_state
from enforcer.schedule.quota import Quota, admit
from enforcer.schedule.scheduler import schedule
from enforcer.secrets.files import SecretFiles
from enforcer.secrets.vaults import WAITING_FOR_KEY, SiteVaults, instance_secrets
from enforcer.shared.spec.model import Application

__all__ = ["DesiredState", "desired_state"]


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
) -> DesiredState:
    """`current`: the instances desired on this host now (a running instance stays put);
    `gpus`: the GPUs they had (`DesiredState.gpus` of the last call), which they keep."""
    current = frozenset(current)
    sched = schedule(
        [host_state(host)],
        sorted(apps.values(), key=lambda a: a.name),
        dict.fromkeys(current, host.id),
        gpus,
    )
    out = DesiredState(warnings=sched.warnings)
    inv = host.inventory
    waiting: dict[str, list[str]] = {}  # placed, but a secret is not here (yet)
    placed = sched.on_host(host.id)
    if quotas:
        placed, over = admit([sched.demand(i) for i in placed], quotas, current)
        waiting.update((iid, [why]) for iid, why in over.items())
    for iid in placed:
        d = sched.demand(iid)
        app = apps[d.app]
        svc = app.service(d.service)
        why, secrets = instance_secrets(app.tenant, svc, vaults, secret_files)
        if why:
            waiting[iid] = [why]
            if why == WAITING_FOR_KEY:
                out.held[iid] = (app.tenant, app.name)
            continue
        assigned = gpu_passthrough(inv, sched.gpus.get(iid, ()))  # GPUs the scheduler gave it
        out.desired[iid] = desired_instance(
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
    return out
