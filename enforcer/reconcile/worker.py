"""One serial worker per service instance (kopf's per-object worker).

The worker is the only code that touches its instance's containers, so nothing is created
twice by racing loops. Woken by Docker events, probes, timers and resyncs, it observes the
instance, asks `plan.plan_instance` what to do, and does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from enforcer.facade import ContainerStatus, InstanceState, InstanceStatus
from enforcer.reconcile import restarts
from enforcer.reconcile.instances import DesiredInstance
from enforcer.reconcile.plan import Action, Observed, Op, plan_instance
from enforcer.runtime.docker import (
    ContainerDetails,
    ObservedContainer,
    RuntimeRequestError,
    RuntimeUnavailable,
)
from enforcer.runtime.probes import ProbeRunner
from enforcer.secrets.files import write_instance_files
from enforcer.shared.spec.model import Outbound, Probes

if TYPE_CHECKING:
    from enforcer.reconcile.reconciler import Reconciler

log = logging.getLogger(__name__)
READY_WAIT = 60.0  # how long a rolling update waits for a replaced instance to be ready


def parse_docker_time(text: str) -> float:
    """Docker's RFC 3339 timestamps with nanoseconds → unix time (0 for the zero time)."""
    if not text or text.startswith("0001-"):
        return 0.0
    head, _, rest = text.partition(".")
    frac = "".join(ch for ch in rest if ch.isdigit())[:6]
    tz = "+00:00" if text.endswith("Z") else rest[len(rest.rstrip("+-:0123456789")) :]
    stamp = f"{head}.{frac or '0'}{tz if tz.startswith(('+', '-')) else '+00:00'}"
    return datetime.fromisoformat(stamp).timestamp()


class InstanceWorker:
    def __init__(self, rec: Reconciler, instance_id: str) -> None:
        self.rec = rec
        self.id = instance_id
        self.desired: DesiredInstance | None = None
        self.state = InstanceState.PENDING
        self.reason = ""
        self.restart: dict[str, restarts.RestartState] = {}
        self.seen_exit: dict[str, str] = {}  # container -> FinishedAt already counted
        self.liveness_failed: set[str] = set()
        self.start_failures: dict[str, int] = {}
        self.probes: dict[str, tuple[str, ProbeRunner]] = {}  # container -> (docker id, runner)
        self.details: dict[str, ContainerDetails] = {}
        self.pull_state = restarts.RestartState()
        self.next_wake: float | None = None
        self.done = False
        self._wake = asyncio.Event()
        self._prefetched: list[ObservedContainer] | None = None
        self._inspect = False  # the next pass inspects every container (after a death)
        self._listed: list[ObservedContainer] = []  # the last listing, for a death's fast path
        self._later: list[tuple[str, str, dict[str, object]]] = []  # events after the actions
        self._rng = random.Random(instance_id)
        self.task: asyncio.Task[None] | None = None

    # -- driving -------------------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name=f"instance:{self.id}")

    def wake(self, observed: list[ObservedContainer] | None = None, inspect: bool = False) -> None:
        """Run a pass soon. `inspect`: a container died — Docker's listing may still say
        running for a few milliseconds after the die event, an inspect does not."""
        self._prefetched = observed
        self._inspect = self._inspect or inspect
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            timeout = None if self.next_wake is None else max(0.0, self.next_wake - time.time())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            self.next_wake = None
            try:
                finished = await self.sync()
            except RuntimeUnavailable as exc:
                self.state, self.reason = InstanceState.UNKNOWN, str(exc)
                self.rec.runtime_down(str(exc))
                continue  # the reconciler wakes us when the engine is back
            except RuntimeRequestError as exc:
                self.state, self.reason = InstanceState.FAILED, str(exc)
                await self.rec.event("instance.failed", f"{self.id}: {exc}", self)
                self.next_wake = time.time() + 5
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("instance %s: unexpected error", self.id)
                self.state, self.reason = InstanceState.FAILED, "internal error, see the log"
                self.next_wake = time.time() + 5
                continue
            if finished:
                self.stop_probes()
                self.done = True
                return

    # -- one pass ------------------------------------------------------------------------
    async def sync(self) -> bool:
        """Converge once; True when the instance is gone and the worker can end."""
        rt = self.rec.runtime
        desired = self.desired
        if desired is None and self.id in self.rec.held:
            return False  # left as it is until it is desired again (its containers run on)
        listed = self._prefetched
        self._prefetched = None
        force, self._inspect = self._inspect, False
        observed: list[Observed] | None = None
        if listed is None and force and self._listed:
            observed = await self._observe_known(desired)  # a death: no listing needed
        if observed is None:
            if listed is None:
                listed = await rt.list_managed(instance=self.id)
            self._listed = list(listed)
            observed = [await self._observe(c, desired, force) for c in listed]
        images: dict[str, str | None] = {}
        if desired is not None:
            for c in desired.containers:
                images[c.image] = await self.rec.image_id(c.image)
        now = time.time()
        actions = plan_instance(
            desired, observed, images, now=now, liveness_failed=frozenset(self.liveness_failed)
        )
        if any(a.op is not Op.OK for a in actions):
            log.debug(
                "instance %s plan: %s",
                self.id,
                [(a.op.value, a.container, a.reason) for a in actions],
            )
        try:
            for action in actions:
                if not await self._do(action, desired, images):
                    return False
        finally:
            await self._flush_events()
        if desired is None:
            await self._cleanup()
            return True
        self._update_state(actions, now)
        return False

    async def _observe(
        self, c: ObservedContainer, desired: DesiredInstance | None, force: bool = False
    ) -> Observed:
        need_details = c.state != "running" or (desired is not None and len(desired.containers) > 1)
        owner = desired is not None and c.container == desired.owner.name
        cached = self.details.get(c.container)
        stale = cached is None or cached.id != c.id or (owner and not cached.ip)
        fresh = force or need_details or stale
        if fresh:
            self.details[c.container] = await self.rec.runtime.details(
                c.id, desired.network if desired is not None and owner else ""
            )
        det = self.details[c.container]
        # a listing handed over by a resync may be older than the inspect just made
        running = det.running if fresh else c.state == "running"
        if not running and det.finished_at and self.seen_exit.get(c.container) != det.finished_at:
            self.seen_exit[c.container] = det.finished_at
            ran_for = parse_docker_time(det.finished_at) - parse_docker_time(det.started_at)
            prev = self.restart.get(c.container, self.rec.saved_restarts(self.id, c.container))
            self.restart[c.container] = restarts.on_exit(
                prev,
                self.rec.backoff,
                now=time.time(),
                ran_for=ran_for,
                exit_code=det.exit_code,
                rng=self._rng,
            )
            self._stop_probe(c.container)
            self._later.append(  # recorded after the restart: healing first
                (
                    "container.exited",
                    f"{self.id}/{c.container} exited with code {det.exit_code}"
                    + (" (out of memory)" if det.oom_killed else ""),
                    {"exit_code": det.exit_code},
                )
            )
        st = self.restart.get(c.container)
        return Observed(
            id=c.id,
            container=c.container,
            config_hash=c.config_hash,
            running=running,
            exit_code=det.exit_code,
            started_at=det.started_at,
            restarting_due=st.next_retry if st is not None else None,
        )

    async def _observe_known(self, desired: DesiredInstance | None) -> list[Observed] | None:
        """Inspect the containers of the last listing directly; None when one is gone."""
        out = []
        for c in self._listed:
            try:
                out.append(await self._observe(c, desired, force=True))
            except RuntimeRequestError:
                return None  # removed meanwhile: take a fresh listing
        return out

    async def _flush_events(self) -> None:
        later, self._later = self._later, []
        for kind, message, fields in later:
            await self.rec.event(kind, message, self, **fields)

    async def _do(
        self, action: Action, desired: DesiredInstance | None, images: dict[str, str | None]
    ) -> bool:
        """Carry out one action; False stops this pass (and schedules what comes next)."""
        rt = self.rec.runtime
        op = action.op
        if op is Op.REMOVE:
            self.state = InstanceState.STOPPING
            await self._remove(action.container, action.container_id, desired)
        elif op is Op.PULL:
            return await self._pull(action.reason, images)
        elif op in (Op.CREATE, Op.RECREATE):
            assert desired is not None
            cfg = next(c for c in desired.containers if c.name == action.container)
            if op is Op.RECREATE:
                async with self.rec.update_lock(desired):
                    await self._remove(cfg.name, action.container_id, desired)
                    await self._create(desired, cfg.name, images)
                    await self._wait_ready()
                await self.rec.event("instance.updated", f"{self.id}/{cfg.name} recreated", self)
            else:
                await self._create(desired, cfg.name, images)
        elif op in (Op.START, Op.RESTART):
            assert desired is not None
            if op is Op.RESTART:
                self._stop_probe(action.container)
                cfg = next(c for c in desired.containers if c.name == action.container)
                await rt.stop(action.container_id, cfg.stop_timeout)
                self.seen_exit.pop(action.container, None)
            self.liveness_failed.discard(action.container)
            try:
                await rt.start(action.container_id)
            except RuntimeRequestError as exc:
                return await self._unstartable(action, desired, exc)
            self.start_failures.pop(action.container, None)
            self._count_restart(action.container)
            self._start_probe(desired, action.container, action.container_id)
            await self.rec.after_start(self, desired, action.container)
            await self.rec.event(
                "container.restarted", f"{self.id}/{action.container}: {action.reason}", self
            )
        elif op is Op.WAIT:
            due = self.restart[action.container].next_retry or time.time()
            self.next_wake = due if self.next_wake is None else min(self.next_wake, due)
        return True

    async def _unstartable(
        self, action: Action, desired: DesiredInstance, exc: RuntimeRequestError
    ) -> bool:
        """A container Docker will not start again is replaced by a new one.

        Seen with Docker 20.10 after an engine restart: "task ... already exists", for ever.
        Any other refusal gets one more try first."""
        failures = self.start_failures.get(action.container, 0) + 1
        self.start_failures[action.container] = failures
        if "already exists" not in str(exc) and failures < 2:
            raise exc
        self.start_failures.pop(action.container, None)
        await self._remove(action.container, action.container_id, desired)
        await self.rec.event(
            "container.replaced", f"{self.id}/{action.container} would not start ({exc})", self
        )
        self.wake()  # the next pass creates it anew
        return False

    async def _pull(self, ref: str, images: dict[str, str | None]) -> bool:
        now = time.time()
        if self.pull_state.next_retry is not None and self.pull_state.next_retry > now:
            self.next_wake = self.pull_state.next_retry
            return False
        self.state, self.reason = InstanceState.PULLING, f"pulling {ref}"
        try:
            images[ref] = await self.rec.pull(ref)
        except RuntimeRequestError as exc:
            self.pull_state = restarts.on_exit(
                self.pull_state, self.rec.backoff, now=now, ran_for=0, exit_code=None
            )
            self.pull_state = restarts.on_restarted(self.pull_state)
            delay = max(self.rec.backoff.delay(self.pull_state.streak + 1), 1.0)
            self.next_wake = now + delay
            self.state = InstanceState.IMAGE_PULL_FAILED
            self.reason = f"cannot pull {ref}: {exc}"
            await self.rec.event("image.pull-failed", f"{self.id}: {self.reason}", self)
            return False
        self.pull_state = restarts.RestartState()
        self.wake()  # plan again with the image present
        return False

    async def _create(
        self, desired: DesiredInstance, name: str, images: dict[str, str | None]
    ) -> None:
        cfg = next(c for c in desired.containers if c.name == name)
        self.state, self.reason = InstanceState.CREATING, ""
        await self.rec.prepare(desired)
        _write_files(desired)
        write_instance_files(desired)  # normally there already (enforcer.secrets.files)
        owner_id = None
        if not cfg.owner:
            owner = self.details.get(desired.owner.name)
            owner_id = owner.id if owner is not None else None
        self._listed = []  # the set of containers changes: the next pass lists again
        cid = await self.rec.runtime.create(cfg, images[cfg.image] or "", owner_id)
        await self.rec.runtime.start(cid)
        self.details.pop(name, None)
        if cfg.owner:
            self.details[name] = await self.rec.runtime.details(cid, desired.network)
        self._start_probe(desired, name, cid)
        await self.rec.after_start(self, desired, name)
        await self.rec.event("container.started", f"{self.id}/{name} started", self)

    async def _remove(self, name: str, cid: str, desired: DesiredInstance | None) -> None:
        self._stop_probe(name)
        self._listed = []
        timeout = None  # not desired any more: the stop timeout it was created with
        if desired is not None:
            timeout = next((c.stop_timeout for c in desired.containers if c.name == name), None)
        with contextlib.suppress(RuntimeRequestError):
            await self.rec.runtime.stop(cid, timeout)
        await self.rec.runtime.remove(cid)
        self.details.pop(name, None)
        self.seen_exit.pop(name, None)

    async def _cleanup(self) -> None:
        for vol in await self.rec.runtime.managed_volumes(instance=self.id, ephemeral="true"):
            await self.rec.runtime.remove_volume(vol)
        shutil.rmtree(Path(self.rec.instances_dir) / self.id, ignore_errors=True)
        await self.rec.forget(self.id)
        self.state, self.reason = InstanceState.EXITED, "removed"

    async def _wait_ready(self) -> None:
        deadline = time.time() + READY_WAIT
        while time.time() < deadline and not self._ready():
            await asyncio.sleep(0.1)

    # -- restarts and probes -------------------------------------------------------------
    def _count_restart(self, container: str) -> None:
        prev = self.restart.get(container, self.rec.saved_restarts(self.id, container))
        st = restarts.on_restarted(prev)
        self.restart[container] = st
        self.rec.save_restarts(self.id, container, st)

    def _start_probe(self, desired: DesiredInstance, name: str, cid: str) -> None:
        self._stop_probe(name)
        probes = self.rec.probes_of(desired, name)
        if probes == Probes():
            return
        runner = ProbeRunner(
            f"{self.id}/{name}",
            probes,
            ip=lambda: self._owner_ip(desired),
            run_exec=lambda cmd, timeout: self.rec.runtime.exec(cid, cmd, timeout),
            on_failure=lambda why: self._probe_failed(name, why),
            on_change=self._probe_changed,
        )
        self.probes[name] = (cid, runner)
        runner.start()

    def _owner_ip(self, desired: DesiredInstance) -> str:
        det = self.details.get(desired.owner.name)
        return det.ip if det is not None else ""

    def _probe_changed(self) -> None:
        self.wake()  # a pass recomputes the state (starting -> running)
        self.rec.status_changed()

    def _probe_failed(self, name: str, why: str) -> None:
        self.liveness_failed.add(name)
        log.info("instance %s/%s: %s, restarting it", self.id, name, why)
        self.wake()

    def _stop_probe(self, name: str) -> None:
        entry = self.probes.pop(name, None)
        if entry is not None:
            entry[1].stop()

    def stop_probes(self) -> None:
        for name in list(self.probes):
            self._stop_probe(name)

    # -- status --------------------------------------------------------------------------
    def _ready(self) -> bool:
        if self.desired is None:
            return False
        for c in self.desired.containers:
            det = self.details.get(c.name)
            if det is None and c.owner:
                return False
            entry = self.probes.get(c.name)
            if entry is not None and (not entry[1].started or entry[1].ready is False):
                return False
        return self.state in (InstanceState.RUNNING, InstanceState.CREATING)

    def _update_state(self, actions: list[Action], now: float) -> None:
        waiting = [a for a in actions if a.op is Op.WAIT]
        exited = [a for a in actions if a.op is Op.KEEP_EXITED]
        if waiting:
            st = self.restart[waiting[0].container]
            self.state = InstanceState.BACKOFF
            due = max(0.0, (st.next_retry or now) - now)
            self.reason = f"{waiting[0].container} {waiting[0].reason}, next retry in {due:.0f}s"
        elif exited and len(exited) == len(self.desired.containers if self.desired else []):
            self.state, self.reason = InstanceState.EXITED, exited[0].reason
        else:
            starting = any(not r.started for _, r in self.probes.values())
            self.state = InstanceState.STARTING if starting else InstanceState.RUNNING
            self.reason = ""

    def status(self) -> InstanceStatus:
        d = self.desired
        containers = []
        total = 0
        last_exit: int | None = None
        next_retry: float | None = None
        names = [c.name for c in d.containers] if d else sorted(self.details)
        for name in names:
            st = self.restart.get(name) or self.rec.saved_restarts(self.id, name)
            total += st.restarts
            last_exit = st.last_exit_code if st.last_exit_code is not None else last_exit
            if st.next_retry is not None and st.next_retry > time.time():
                next_retry = st.next_retry if next_retry is None else min(next_retry, st.next_retry)
            det = self.details.get(name)
            entry = self.probes.get(name)
            containers.append(
                ContainerStatus(
                    name=name,
                    state=det.state if det is not None else "missing",
                    restarts=st.restarts,
                    last_exit_code=st.last_exit_code,
                    ready=entry[1].ready if entry is not None else None,
                )
            )
        if self.state is InstanceState.IMAGE_PULL_FAILED:
            next_retry = self.next_wake
        app, _, rest = self.id.partition(".")
        return InstanceStatus(
            id=self.id,
            app=d.app if d else app,
            service=d.service if d else rest.rpartition(".")[0],
            tenant=d.tenant if d else "",
            host=self.rec.ctx.host,
            version=d.version if d else "",
            state=self.state,
            ready=self._ready() and self.state is InstanceState.RUNNING,
            restarts=total,
            reason=self.reason,
            last_exit_code=last_exit,
            next_retry=next_retry,
            containers=tuple(containers),
        )

    @property
    def outbound_allowed_ip(self) -> str:
        d = self.desired
        if d is None or d.outbound is not Outbound.ALLOW:
            return ""
        return self._owner_ip(d)


def _write_files(desired: DesiredInstance) -> None:
    """Render config-map files atomically under the instance's files directory."""
    base = Path(desired.files_dir)
    vols = {f.volume for f in desired.files}
    for vol in vols:
        (base / vol).mkdir(parents=True, exist_ok=True)
    for f in desired.files:
        target = base / f.volume / f.name
        tmp = target.with_name(f".{f.name}.tmp")
        tmp.write_text(f.data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
