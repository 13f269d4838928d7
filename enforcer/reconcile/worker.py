"""One serial worker per service instance (kopf's per-object worker).

The worker is the only code that touches its instance's containers, so nothing is created
twice by racing loops. Woken by engine events, probes, timers and resyncs, it observes the
instance, asks `plan.plan_instance` what to do, and does it — through the `Runtime` Protocol.

A change of the desired state reaches a busy worker: a pass stops between actions when its
plan went stale, a rolling update re-reads the desired state once it holds the service's lock,
and its wait for readiness ends when the desired state changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import TYPE_CHECKING

from enforcer.facade import InstanceState, InstanceStatus
from enforcer.reconcile import restarts
from enforcer.reconcile.instances import DesiredInstance
from enforcer.reconcile.plan import Action, Observed, Op, plan_instance
from enforcer.reconcile.probing import InstanceProbes
from enforcer.reconcile.runtime import (
    ContainerDetails,
    ObservedContainer,
    PullStalled,
    RuntimeRequestError,
    RuntimeUnavailable,
)
from enforcer.reconcile.status import instance_status, is_ready, state_after, write_config_files
from enforcer.secrets.files import write_instance_files
from enforcer.shared.spec.model import Outbound

if TYPE_CHECKING:
    from enforcer.reconcile.reconciler import Reconciler

log = logging.getLogger(__name__)
READY_WAIT = 60.0  # how long a rolling update waits for a replaced instance to be ready


class InstanceWorker:
    def __init__(self, rec: Reconciler, instance_id: str) -> None:
        self.rec = rec
        self.id = instance_id
        self.desired: DesiredInstance | None = None
        self.state = InstanceState.PENDING
        self.reason = ""
        self.restart: dict[str, restarts.RestartState] = {}
        self.liveness_failed: set[str] = set()
        self.start_failures: dict[str, int] = {}
        self.probes = InstanceProbes(instance_id)
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
        """Run a pass soon. `inspect`: a container died — the engine's listing may still say
        running for a few milliseconds after the die event, an inspect does not."""
        self._prefetched = observed
        self._inspect = self._inspect or inspect
        self._wake.set()

    async def _loop(self) -> None:
        try:
            while not await self._turn():
                pass
        finally:
            self.probes.end_all()
            self.done = True
            self.rec.worker_done(self)

    async def _turn(self) -> bool:
        """Wait for a reason, then one pass; True when the instance is gone."""
        timeout = None if self.next_wake is None else max(0.0, self.next_wake - time.time())
        with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        self._wake.clear()
        self.next_wake = None
        started = time.monotonic()
        try:
            return await self.sync()
        except RuntimeUnavailable as exc:
            self.state, self.reason = InstanceState.UNKNOWN, str(exc)
            self.rec.runtime_down(str(exc))  # the reconciler wakes us when the engine is back
        except RuntimeRequestError as exc:
            self.state, self.reason = InstanceState.FAILED, str(exc)
            await self.rec.event("instance.failed", f"{self.id}: {exc}", self)
            self.next_wake = time.time() + 5
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("instance %s: unexpected error", self.id)
            self.state, self.reason = InstanceState.FAILED, "internal error, see the log"
            self.next_wake = time.time() + 5
        finally:
            if self.rec.on_pass is not None:
                self.rec.on_pass(time.monotonic() - started)
        return False

    # -- one pass ------------------------------------------------------------------------
    async def sync(self) -> bool:
        """Converge once; True when the instance is gone and the worker can end."""
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
                listed = await self.rec.runtime.list_managed(instance=self.id)
            self._listed = list(listed)
            observed = [await self._observe(c, desired, force) for c in listed]
        images: dict[str, str | None] = {}
        if desired is not None:
            for c in desired.containers:
                images[c.image] = await self.rec.images.image_id(c.image)
        now = time.time()
        actions = plan_instance(
            desired, observed, images, now=now, liveness_failed=frozenset(self.liveness_failed)
        )
        if any(a.op is not Op.OK for a in actions):
            log.debug("instance %s plan: %s", self.id, [(a.op.value, a.container) for a in actions])
        try:
            for action in actions:
                if self.desired != desired:  # changed meanwhile: this plan is stale
                    self.wake()
                    return False
                if not await self._do(action, desired, images):
                    return False
        finally:
            await self._flush_events()
        if desired is None:
            await self.rec.cleanup(self.id)
            self.state, self.reason = InstanceState.EXITED, "removed"
            return True
        self.state, self.reason = state_after(self, actions, now)
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
        if not running and det.finished_at:
            self._exited(c.container, det)
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

    def _exited(self, name: str, det: ContainerDetails) -> None:
        """Count an exit once (across enforcer restarts too) and plan its retry."""
        saved, seen = self.rec.saved_restarts(self.id, name)
        prev = self.restart.get(name, saved)
        self.restart[name] = prev
        if seen == det.finished_at:
            return
        now, code = time.time(), det.exit_code
        st = restarts.on_exit(
            prev, self.rec.backoff, now=now, ran_for=det.ran_for, exit_code=code, rng=self._rng
        )
        self.restart[name] = st
        self.rec.save_restarts(self.id, name, st, det.finished_at)
        self.probes.end(name)
        oom = " (out of memory)" if det.oom_killed else ""
        message = f"{self.id}/{name} exited with code {code}{oom}"
        self._later.append(("container.exited", message, {"exit_code": code}))  # after healing

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
        op = action.op
        if op is Op.REMOVE:
            self.state = InstanceState.STOPPING
            await self._remove(action.container, action.container_id, desired)
        elif op is Op.PULL:
            return await self._pull(action.reason, images)
        elif op is Op.RECREATE:
            assert desired is not None
            return await self._recreate(action, desired, images)
        elif op is Op.CREATE:
            assert desired is not None
            await self._create(desired, action.container, images)
        elif op in (Op.START, Op.RESTART):
            assert desired is not None
            return await self._start(action, desired)
        elif op is Op.WAIT:
            due = self.restart[action.container].next_retry or time.time()
            self.next_wake = due if self.next_wake is None else min(self.next_wake, due)
        return True

    async def _recreate(
        self, action: Action, desired: DesiredInstance, images: dict[str, str | None]
    ) -> bool:
        """Rolling update: one instance of a service at a time, each waiting for readiness."""
        async with self.rec.update_lock(desired):
            if self.desired != desired:  # changed while waiting for its turn: plan again
                self.wake()
                return False
            await self._remove(action.container, action.container_id, desired)
            await self._create(desired, action.container, images)
            await self._wait_ready(desired)
        await self.rec.event("instance.updated", f"{self.id}/{action.container} recreated", self)
        return True

    async def _start(self, action: Action, desired: DesiredInstance) -> bool:
        rt = self.rec.runtime
        if action.op is Op.RESTART:
            self.probes.end(action.container)
            cfg = next(c for c in desired.containers if c.name == action.container)
            await rt.stop(action.container_id, cfg.stop_timeout)
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
        return True

    async def _unstartable(
        self, action: Action, desired: DesiredInstance, exc: RuntimeRequestError
    ) -> bool:
        """A container the engine will not start again ("task ... already exists", for ever,
        after an engine restart with Docker 20.10) is replaced; other refusals get one retry."""
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
        self.rec.status_changed()
        try:
            images[ref] = await self.rec.images.pull(ref)
        except RuntimeRequestError as exc:
            # the backoff counts from the failure: a pull that waited for a slot and then
            # stalled took longer than the first delay, and would be tried again at once
            streak = self.pull_state.streak + 1
            delay = max(self.rec.backoff.delay(streak + 1, self._rng), 1.0)
            self.pull_state = restarts.RestartState(streak=streak, next_retry=time.time() + delay)
            self.next_wake = self.pull_state.next_retry
            self.state = InstanceState.IMAGE_PULL_FAILED
            self.reason = str(exc) if isinstance(exc, PullStalled) else f"cannot pull {ref}: {exc}"
            kind = "image.pull-stalled" if isinstance(exc, PullStalled) else "image.pull-failed"
            await self.rec.event(kind, f"{self.id}: {self.reason}", self)
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
        write_config_files(desired)
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
        self.probes.end(name)
        self._listed = []
        timeout = None  # not desired any more: the stop timeout it was created with
        if desired is not None:
            timeout = next((c.stop_timeout for c in desired.containers if c.name == name), None)
        with contextlib.suppress(RuntimeRequestError):
            await self.rec.runtime.stop(cid, timeout)
        await self.rec.runtime.remove(cid)
        self.details.pop(name, None)

    async def _wait_ready(self, desired: DesiredInstance) -> None:
        """Until ready, READY_WAIT at most — or until the desired state changes."""
        deadline = time.time() + READY_WAIT
        while time.time() < deadline and not self._ready() and self.desired == desired:
            await asyncio.sleep(0.1)

    # -- restarts and probes -------------------------------------------------------------
    def _count_restart(self, container: str) -> None:
        saved, seen = self.rec.saved_restarts(self.id, container)
        st = restarts.on_restarted(self.restart.get(container, saved))
        self.restart[container] = st
        self.rec.save_restarts(self.id, container, st, seen)

    def _start_probe(self, desired: DesiredInstance, name: str, cid: str) -> None:
        self.probes.begin(
            name,
            cid,
            self.rec.probes_of(desired, name),
            check=lambda probe: self.rec.runtime.probe(cid, self._owner_ip(desired), probe),
            on_failure=lambda why: self._probe_failed(name, why),
            on_change=self._probe_changed,
        )

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

    # -- status --------------------------------------------------------------------------
    def _ready(self) -> bool:
        return is_ready(self)

    def status(self) -> InstanceStatus:
        return instance_status(self, ready=self._ready())

    @property
    def outbound_allowed_ip(self) -> str:
        d = self.desired
        if d is None or d.outbound is not Outbound.ALLOW:
            return ""
        return self._owner_ip(d)
