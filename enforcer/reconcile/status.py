"""What `ps` shows of one instance, from its worker; and the instance's config-map files."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from enforcer.facade import ContainerStatus, InstanceState, InstanceStatus
from enforcer.reconcile.instances import DesiredInstance
from enforcer.reconcile.plan import Action, Op

if TYPE_CHECKING:
    from enforcer.reconcile.worker import InstanceWorker


def instance_status(w: InstanceWorker, *, ready: bool) -> InstanceStatus:
    d = w.desired
    containers = []
    total = 0
    last_exit: int | None = None
    next_retry: float | None = None
    names = [c.name for c in d.containers] if d else sorted(w.details)
    for name in names:
        st = w.restart.get(name) or w.rec.saved_restarts(w.id, name)[0]
        total += st.restarts
        last_exit = st.last_exit_code if st.last_exit_code is not None else last_exit
        if st.next_retry is not None and st.next_retry > time.time():
            next_retry = st.next_retry if next_retry is None else min(next_retry, st.next_retry)
        det = w.details.get(name)
        entry = w.probes.get(name)
        containers.append(
            ContainerStatus(
                name=name,
                state=det.state if det is not None else "missing",
                restarts=st.restarts,
                last_exit_code=st.last_exit_code,
                ready=entry[1].ready if entry is not None else None,
            )
        )
    if w.state is InstanceState.IMAGE_PULL_FAILED:
        next_retry = w.next_wake
    app, _, rest = w.id.partition(".")
    return InstanceStatus(
        id=w.id,
        app=d.app if d else app,
        service=d.service if d else rest.rpartition(".")[0],
        tenant=d.tenant if d else "",
        host=w.rec.ctx.host,
        version=d.version if d else "",
        state=w.state,
        ready=ready and w.state is InstanceState.RUNNING,
        restarts=total,
        reason=w.reason,
        last_exit_code=last_exit,
        next_retry=next_retry,
        containers=tuple(containers),
        gpus=d.gpus if d else (),
    )


def is_ready(w: InstanceWorker) -> bool:
    """Its containers are there, started and ready by their probes."""
    if w.desired is None:
        return False
    for c in w.desired.containers:
        det = w.details.get(c.name)
        if det is None and c.owner:
            return False
        entry = w.probes.get(c.name)
        if entry is not None and (not entry[1].started or entry[1].ready is False):
            return False
    return w.state in (InstanceState.RUNNING, InstanceState.CREATING)


def state_after(w: InstanceWorker, actions: list[Action], now: float) -> tuple[InstanceState, str]:
    """The instance's state and reason once a pass carried out `actions`."""
    waiting = [a for a in actions if a.op is Op.WAIT]
    exited = [a for a in actions if a.op is Op.KEEP_EXITED]
    if waiting:
        st = w.restart[waiting[0].container]
        due = max(0.0, (st.next_retry or now) - now)
        reason = f"{waiting[0].container} {waiting[0].reason}, next retry in {due:.0f}s"
        return InstanceState.BACKOFF, reason
    if exited and len(exited) == len(w.desired.containers if w.desired else []):
        return InstanceState.EXITED, exited[0].reason
    starting = any(not r.started for _, r in w.probes.values())
    return (InstanceState.STARTING if starting else InstanceState.RUNNING), ""


def write_config_files(desired: DesiredInstance) -> None:
    """Render config-map files atomically under the instance's files directory."""
    base = Path(desired.files_dir)
    for vol in {f.volume for f in desired.files}:
        (base / vol).mkdir(parents=True, exist_ok=True)
    for f in desired.files:
        target = base / f.volume / f.name
        tmp = target.with_name(f".{f.name}.tmp")
        tmp.write_text(f.data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
