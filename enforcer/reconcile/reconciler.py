"""The inner control loop: drive this host's container engine to the desired instances.

Owns one `InstanceWorker` per live instance, feeds them from the engine's event stream
(immediate reaction) and a full comparison with all the engine has — at once when the first
desired state arrives, then periodically (nothing is missed) — watches the engine's
availability, and keeps the shared pieces — application networks, images, the outbound
firewall — in step. The engine, the firewall and the store are Protocols
(`enforcer.reconcile.runtime`); the daemon wires the real ones in.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from enforcer.facade import InstanceState, InstanceStatus
from enforcer.network.names import NameRecord
from enforcer.reconcile import restarts
from enforcer.reconcile.images import Images
from enforcer.reconcile.instances import Context, DesiredInstance, bridge_name
from enforcer.reconcile.plan import plan_site
from enforcer.reconcile.prepare import Preparer
from enforcer.reconcile.runtime import (
    ObservedContainer,
    OutboundPolicy,
    RestartStore,
    Runtime,
    RuntimeUnavailable,
)
from enforcer.reconcile.status import is_ready
from enforcer.reconcile.worker import InstanceWorker
from enforcer.shared.spec.model import Application, Probes

log = logging.getLogger(__name__)
EventSink = Callable[..., Awaitable[None]]
FIREWALL_CHECK = 5.0  # seconds between checks that the outbound rules are still in place


class Reconciler:
    def __init__(
        self,
        runtime: Runtime,
        store: RestartStore,
        ctx: Context,
        *,
        instances_dir: Path,
        backoff: restarts.BackoffPolicy,
        resync_interval: float,
        emit: EventSink,
        firewall: OutboundPolicy,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.ctx = ctx
        self.instances_dir = str(instances_dir)
        self.backoff = backoff
        self.resync_interval = resync_interval
        self._emit = emit
        self.firewall = firewall
        self.workers: dict[str, InstanceWorker] = {}
        self.desired: dict[str, DesiredInstance] = {}
        self.apps: dict[str, Application] = {}
        self.pending: dict[str, InstanceStatus] = {}
        # instances left as they are (not desired, not removed): iid -> (tenant, app)
        self.held: dict[str, tuple[str, str]] = {}
        self.runtime_ok = True
        self.runtime_error = ""
        self.on_pass: Callable[[float], None] | None = None  # seconds of each worker pass
        self.on_container: Callable[[], None] | None = None  # a managed one started or ended
        self.images = Images(runtime)
        self._update_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.preparer = Preparer(runtime, ctx)  # networks (their subnets), volumes, dirs
        self._saved: dict[str, tuple[restarts.RestartState, str]] = {}  # and FinishedAt counted
        self._up = asyncio.Event()
        self._up.set()
        self._resync_now = asyncio.Event()
        self._have_desired = asyncio.Event()  # the first comparison waits for the first state
        self._firewall_dirty = asyncio.Event()
        self.changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        counts = await self.store.restart_counts()
        backoffs = await self.store.backoffs()
        for key in set(counts) | set(backoffs):
            count, last = counts.get(key, (0, None))
            streak, due, seen = backoffs.get(key, (0, None, ""))
            self._saved[key] = (restarts.RestartState(count, streak, last, due), seen)
        for name, coro in (
            ("docker-events", self._event_loop()),
            ("resync", self._resync_loop()),
            ("runtime-monitor", self._monitor_loop()),
            ("firewall", self._firewall_loop()),
        ):
            self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self) -> None:
        """Stop the loops and workers — never the containers (they keep running)."""
        tasks = self._tasks + [w.task for w in self.workers.values() if w.task is not None]
        for w in self.workers.values():
            w.probes.end_all()
        for t in tasks:
            t.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)

    # -- desired state -------------------------------------------------------------------
    def set_desired(
        self,
        desired: Mapping[str, DesiredInstance],
        pending: Mapping[str, InstanceStatus],
        apps: Mapping[str, Application],
        held: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        """`held` instances (pending ones whose containers may run on) are neither created
        nor removed: their containers stay as they are until they are desired again."""
        was_held = set(self.held)
        self.desired = dict(desired)
        self.pending = dict(pending)
        self.apps = dict(apps)
        self.held = dict(held or {})
        moved = was_held ^ set(self.held)
        # the live workers only: those of removed instances are dropped when done
        for iid in set(self.desired) | set(self.workers):
            new = iid not in self.workers or self.workers[iid].done
            w = self._worker(iid)
            wanted = self.desired.get(iid)
            if new or w.desired != wanted or iid in moved:
                w.desired = wanted
                w.wake()
        if not self._have_desired.is_set():  # the first state: compare all at once
            self._have_desired.set()
            self._resync_now.set()
        self._firewall_dirty.set()
        self.status_changed()

    def _worker(self, iid: str) -> InstanceWorker:
        w = self.workers.get(iid)
        if w is None or w.done:
            w = InstanceWorker(self, iid)
            w.desired = self.desired.get(iid)
            self.workers[iid] = w
            w.start()
        return w

    def worker_done(self, w: InstanceWorker) -> None:
        if self.workers.get(w.id) is w:
            del self.workers[w.id]

    def probes_of(self, desired: DesiredInstance, container: str) -> Probes:
        app = self.apps.get(desired.app)
        if app is None:
            return Probes()
        for c in app.service(desired.service).containers:
            if c.name == container:
                return c.probes
        return Probes()

    # -- what workers call ---------------------------------------------------------------
    async def event(self, kind: str, message: str, w: InstanceWorker, **fields: Any) -> None:
        d = w.desired
        await self._emit(
            kind,
            message,
            app=d.app if d else w.id.split(".")[0],
            instance=w.id,
            tenant=d.tenant if d else "",
            fields=fields,
        )
        self.status_changed()

    def status_changed(self) -> None:
        async def notify() -> None:
            async with self.changed:
                self.changed.notify_all()

        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(notify())

    def runtime_down(self, error: str) -> None:
        if self.runtime_ok:
            log.warning("container runtime unavailable: %s", error)
        self.runtime_ok = False
        self.runtime_error = error
        self._up.clear()
        for w in self.workers.values():  # nothing is known until the engine is seen again
            w.state, w.reason = InstanceState.UNKNOWN, f"runtime unavailable: {error}"
            w.details.clear()

    def saved_restarts(self, iid: str, container: str) -> tuple[restarts.RestartState, str]:
        """The restart state kept for a container, and the exit (FinishedAt) it counted."""
        return self._saved.get(f"{iid}/{container}", (restarts.RestartState(), ""))

    def save_restarts(
        self, iid: str, container: str, st: restarts.RestartState, seen_exit: str
    ) -> None:
        key = f"{iid}/{container}"
        self._saved[key] = (st, seen_exit)
        task = asyncio.get_running_loop().create_task(self._persist(key, st, seen_exit))
        task.add_done_callback(_log_failure)

    async def _persist(self, key: str, st: restarts.RestartState, seen_exit: str) -> None:
        await self.store.put_restart_count(key, st.restarts, st.last_exit_code)
        await self.store.put_backoff(key, st.streak, st.next_retry, seen_exit)

    async def cleanup(self, iid: str) -> None:
        """What is left of a removed instance: ephemeral volumes, files, restart state."""
        for vol in await self.runtime.managed_volumes(instance=iid, ephemeral="true"):
            await self.runtime.remove_volume(vol)
        shutil.rmtree(Path(self.instances_dir) / iid, ignore_errors=True)
        for key in [k for k in self._saved if k.startswith(iid + "/")]:
            del self._saved[key]
        await self.store.forget_restarts(iid + "/")
        await self.store.forget_backoffs(iid + "/")
        self._firewall_dirty.set()

    def update_lock(self, d: DesiredInstance) -> asyncio.Lock:
        """Rolling updates: one instance of a service is replaced at a time."""
        return self._update_locks.setdefault((d.app, d.service), asyncio.Lock())

    async def prepare(self, d: DesiredInstance) -> None:
        """What an instance needs before its containers: network, volumes, directories."""
        await self.preparer.prepare(d)

    async def after_start(self, w: InstanceWorker, d: DesiredInstance, container: str) -> None:
        if container == d.owner.name:
            w.details[container] = await self.runtime.details(w.details[container].id, d.network)
            self._firewall_dirty.set()
            if w.outbound_allowed_ip:
                await self._apply_firewall()

    # -- loops ---------------------------------------------------------------------------
    async def _event_loop(self) -> None:
        while True:
            await self._up.wait()
            try:
                async for ev in self.runtime.events():
                    attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                    iid = attrs.get("edgeward.instance")
                    action = str(ev.get("Action") or ev.get("status") or "")
                    # a death wakes its worker; any sign of an unknown instance starts one
                    died = action in ("die", "destroy", "oom")
                    if iid and (died or action == "start") and self.on_container is not None:
                        self.on_container()
                    if iid and (died or iid not in self.workers):
                        self._worker(iid).wake(inspect=died)
            except RuntimeUnavailable as exc:
                self.runtime_down(str(exc))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("docker event stream failed")
                await asyncio.sleep(1)

    async def _resync_loop(self) -> None:
        await self._have_desired.wait()
        while True:
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(self.resync_interval):
                    await self._resync_now.wait()
            self._resync_now.clear()
            await self._up.wait()
            try:
                await self.resync()
            except RuntimeUnavailable as exc:
                self.runtime_down(str(exc))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("resync failed")

    async def resync(self) -> None:
        observed = await self.runtime.list_managed()
        by_instance: dict[str, list[ObservedContainer]] = {}
        for c in observed:
            by_instance.setdefault(c.instance, []).append(c)
        nets = [n["Name"] for n in await self.runtime.managed_networks()]
        plan = plan_site(self.desired, list(by_instance), nets)
        for iid in sorted(plan.workers):
            self._worker(iid).wake(by_instance.get(iid, []))
        busy_apps = {c.labels.get("edgeward.app") for c in observed}
        for net in sorted(plan.remove_networks):
            app = net.split(".", 2)[-1]
            if app not in busy_apps:
                with contextlib.suppress(Exception):
                    await self.runtime.remove_network(net)
                self.preparer.forget(net)
        self._firewall_dirty.set()

    async def _monitor_loop(self) -> None:
        while True:
            if self.runtime_ok:
                await asyncio.sleep(5)
                try:
                    await self.runtime.ping()
                except RuntimeUnavailable as exc:
                    self.runtime_down(str(exc))
                continue
            await asyncio.sleep(0.5)
            try:
                await self.runtime.ping()
            except RuntimeUnavailable:
                continue
            log.info("container runtime is back")
            self.runtime_ok, self.runtime_error = True, ""
            self.images.forget()
            self.preparer.forget()  # the engine may have lost networks: prepare() re-ensures
            await self._emit("runtime.available", "the container runtime is available again")
            self._up.set()
            self._resync_now.set()

    async def _firewall_loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(FIREWALL_CHECK):
                    await self._firewall_dirty.wait()
            except TimeoutError:
                await self.firewall.verify()  # hooked again where a reload removed it
                continue
            self._firewall_dirty.clear()
            await asyncio.sleep(0.05)  # coalesce bursts
            await self._apply_firewall()

    async def _apply_firewall(self) -> None:
        bridges: dict[str, set[str]] = {}
        for d in self.desired.values():
            bridges.setdefault(bridge_name(self.ctx.host, d.tenant, d.app), set())
        for tenant, app in self.held.values():  # still running: still denied outbound
            bridges.setdefault(bridge_name(self.ctx.host, tenant, app), set())
        for w in self.workers.values():
            wd = w.desired
            if wd is not None and w.outbound_allowed_ip:
                bridge = bridge_name(self.ctx.host, wd.tenant, wd.app)
                bridges.setdefault(bridge, set()).add(w.outbound_allowed_ip)
        await self.firewall.apply({b: frozenset(ips) for b, ips in bridges.items()})

    # -- reading -------------------------------------------------------------------------
    def instances(self) -> list[InstanceStatus]:
        out = [w.status() for iid, w in self.workers.items() if iid in self.desired]
        if not self.runtime_ok:
            out = [
                dataclasses.replace(
                    s,
                    state=InstanceState.UNKNOWN,
                    reason=f"runtime unavailable: {self.runtime_error}",
                )
                for s in out
            ]
        out.extend(self.pending.values())
        return sorted(out, key=lambda s: s.id)

    def names(self) -> list[NameRecord]:
        """This host's instances with an address, for the site network's names."""
        out = []
        for iid, w in self.workers.items():
            d = w.desired
            det = d and iid in self.desired and w.details.get(d.owner.name)
            if d and det and det.ip:
                n = iid.rsplit(".", 1)[-1]
                out.append(NameRecord(d.tenant, d.app, d.service, n, det.ip, is_ready(w)))
        return out

    async def wait_gone(self, app: str, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            left = [c for c in await self.runtime.list_managed(app=app)]
            if not left:
                return True
            await asyncio.sleep(0.2)
        return False

    async def watch(self) -> AsyncIterator[None]:
        while True:
            async with self.changed:
                await self.changed.wait()
            yield None


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not save restart counts: %s", task.exception())
