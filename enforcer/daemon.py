"""The enforcer daemon: wires config, store, devices, scheduler, reconciler, API and sync.

`Daemon` implements `enforcer.facade.Enforcer`. Stopping the daemon never stops containers:
the next start re-adopts them by their labels and config hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from enforcer import __version__
from enforcer.api.metrics import render_metrics
from enforcer.config.load import EnforcerConfig
from enforcer.devices.udev import DeviceWatcher, Inventory, device_nodes_for, gpu_requests_for
from enforcer.facade import (
    AppRecord,
    AppSource,
    Conflict,
    Event,
    InstanceState,
    InstanceStatus,
    Invalid,
    NotFound,
)
from enforcer.network.firewall import Firewall
from enforcer.reconcile.instances import Context, DesiredInstance, desired_instance
from enforcer.reconcile.reconciler import Reconciler
from enforcer.reconcile.restarts import BackoffPolicy
from enforcer.runtime.docker import DockerRuntime, RuntimeUnavailable
from enforcer.schedule.feasibility import host_state
from enforcer.schedule.quota import Quota, admit
from enforcer.schedule.scheduler import schedule
from enforcer.secrets.files import SecretFiles
from enforcer.secrets.vaults import WAITING_FOR_KEY, SiteVaults, instance_secrets
from enforcer.shared.spec.model import Application
from enforcer.shared.spec.parse import SpecError, application_to_document, parse_application
from enforcer.site.hostinfo import HostInfo, default_host_id, gather_host_info
from enforcer.site.store import Store, StoreError

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config: EnforcerConfig) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.host_id = config.host.id or default_host_id()
        self.site_name = config.site.name or socket.gethostname()
        self.store = Store(self.state_dir / "enforcer.db")
        self.runtime = DockerRuntime(config.docker.host, config.reconcile.docker_parallelism)
        self.firewall = Firewall(f"{self.host_id}:{self.state_dir}")
        self.devices = DeviceWatcher(config.devices.rules, self._devices_changed)
        self.host_info: HostInfo = gather_host_info(self.host_id, config.host.labels, Inventory())
        self.reconciler = Reconciler(
            self.runtime,
            self.store,
            Context(site=self.site_name, host=self.host_id),
            instances_dir=self.state_dir / "instances",
            backoff=BackoffPolicy(
                initial=config.restart.initial_delay,
                maximum=config.restart.max_delay,
                reset_after=config.restart.reset_after,
            ),
            resync_interval=config.reconcile.resync_interval,
            emit=self._emit,
            firewall=self.firewall,
        )
        self.vaults = SiteVaults(self.store, self.state_dir, emit=self._emit)
        self.vaults.on_key = self._vault_key_arrived
        self.secret_files = SecretFiles(config.secrets.dir)
        self.records: dict[str, AppRecord] = {}
        self.apps: dict[str, Application] = {}
        self.warnings: tuple[str, ...] = ()
        self.quotas: tuple[Quota, ...] = ()  # tenants' quotas from control, held here too
        self.sync: Any = None  # enforcer.link.sync.SyncClient when enrolled with control
        self._events = asyncio.Condition()
        self._last_seq = 0
        self._lock = asyncio.Lock()  # apply/remove/schedule one at a time
        self.started = time.time()

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.open()
        if self.secret_files.root.exists():  # used before: on a tmpfs again, stale files go
            self.secret_files.prepare()
        await self.vaults.load()
        try:
            inventory = await self.devices.start()
        except Exception as exc:
            log.warning("device discovery unavailable: %s", exc)
            inventory = Inventory()
        self.host_info = gather_host_info(self.host_id, self.config.host.labels, inventory)
        self.quotas = _load_quotas(await self.store.get("control-quotas"))
        for rec in await self.store.applications():
            try:
                self.apps[rec.name] = parse_application(rec.document, tenant=rec.tenant)
                self.records[rec.name] = rec
            except SpecError as exc:
                log.error("stored application %s no longer validates: %s", rec.name, exc)
        self._set_site_name(_enrolled_site(self.state_dir) or self.site_name)
        events = await self.store.events_since(0, limit=1)
        self._last_seq = events[0].seq if events else 0
        await self.reconciler.start()
        await self._reschedule()
        await self._start_sync()
        await self._emit("enforcer.started", f"enforcer {__version__} started on {self.host_id}")

    async def _start_sync(self) -> None:
        bundle = self.config.control.enrollment
        if not bundle and not (self.state_dir / "site" / "site.json").exists():
            return  # a site-local enforcer: no TLS stack loaded (about 8 MB less)
        from enforcer.link import enrollment, sync

        if bundle.startswith("@"):  # zero-touch: a bundle file that may not be there (yet)
            try:
                bundle = Path(bundle[1:]).read_text().strip()
            except FileNotFoundError:
                bundle = ""
            except OSError as exc:
                log.error("cannot read the enrollment bundle %s: %s", bundle[1:], exc)
                bundle = ""
        if bundle and enrollment.load_site_identity(self.state_dir) is None:
            try:
                await enrollment.enroll(bundle, self.state_dir)
            except Exception as exc:
                log.error("enrollment with control failed: %s", exc)
                await self._emit("control.enrollment-failed", str(exc))
        identity = enrollment.load_site_identity(self.state_dir)
        if identity is None:
            return
        if identity.site != self.site_name:  # just enrolled: SYS_SITE is the site's name now
            self._set_site_name(identity.site)
            await self._reschedule()
        self.sync = sync.SyncClient(
            identity,
            on_desired=self._control_desired,
            on_vaults=self.apply_vaults,
            on_quotas=self.apply_quotas,
            state_dir=self.state_dir,
        )
        self.vaults.set_fetcher(self.sync.fetch_vault_key)
        task = asyncio.create_task(self.sync.run(), name="control-sync")
        task.add_done_callback(_log_if_failed)
        self._sync_task = task
        self._status_task = asyncio.create_task(self._status_loop(), name="status-push")

    def _set_site_name(self, name: str) -> None:
        self.site_name = name
        self.reconciler.ctx = Context(site=name, host=self.host_id)

    async def stop(self) -> None:
        for name in ("_sync_task", "_status_task"):
            task: asyncio.Task[None] | None = getattr(self, name, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self.sync is not None:
            self.sync.close()  # its persisted event queue
        await self.vaults.close()
        await self.reconciler.stop()
        await self.devices.stop()
        await self.store.close()
        self.runtime.close()

    # -- scheduling ----------------------------------------------------------------------
    def _devices_changed(self, inventory: Inventory) -> object:
        self.host_info = gather_host_info(self.host_id, self.config.host.labels, inventory)
        return self._reschedule()

    async def _reschedule(self) -> None:
        host = host_state(self.host_info)
        apps = sorted(self.apps.values(), key=lambda a: a.name)
        current = {iid: self.host_id for iid in self.reconciler.desired}
        sched = schedule([host], apps, current)
        for w in sched.warnings:
            if w not in self.warnings:
                log.warning("%s", w)
        self.warnings = sched.warnings
        desired: dict[str, DesiredInstance] = {}
        pending: dict[str, InstanceStatus] = {}
        inv = self.host_info.inventory
        waiting: dict[str, list[str]] = {}  # placed, but a secret is not here (yet)
        held: dict[str, tuple[str, str]] = {}  # ... only the key is missing: leave it running
        placed = sched.on_host(self.host_id)
        if self.quotas:
            placed, over = admit(
                [sched.demand(i) for i in placed], self.quotas, frozenset(self.reconciler.desired)
            )
            waiting.update((iid, [why]) for iid, why in over.items())
        for iid in placed:
            d = sched.demand(iid)
            app = self.apps[d.app]
            svc = app.service(d.service)
            why, secrets = instance_secrets(app.tenant, svc, self.vaults, self.secret_files)
            if why:
                waiting[iid] = [why]
                if why == WAITING_FOR_KEY:
                    held[iid] = (app.tenant, app.name)
                continue
            nvidia = bool(gpu_requests_for(svc.placement, inv))
            desired[iid] = desired_instance(
                app,
                svc,
                iid,
                self.reconciler.ctx,
                instances_dir=str(self.state_dir / "instances"),
                devices=tuple(device_nodes_for(svc.placement, inv)),
                gpus=svc.placement.gpus if nvidia else 0,
                secrets=secrets,
                secrets_dir=str(self.secret_files.root),
            )
        for iid, reasons in [*sched.pending.items(), *waiting.items()]:
            d = sched.demand(iid)
            pending[iid] = InstanceStatus(
                id=iid,
                app=d.app,
                service=d.service,
                tenant=d.tenant,
                host="",
                version=self.apps[d.app].version,
                state=InstanceState.PENDING,
                ready=False,
                restarts=0,
                reason="; ".join(reasons),
            )
        for iid in set(pending) - set(self.reconciler.pending):
            p = pending[iid]
            message = f"{iid}: {p.reason}"
            await self._emit("instance.pending", message, app=p.app, instance=iid, tenant=p.tenant)
        self.secret_files.sync(desired, held)  # before the workers: new, rotated, removed
        self.reconciler.set_desired(desired, pending, self.apps, held)

    # -- facade: applications ------------------------------------------------------------
    async def apply(self, document: Mapping[str, Any]) -> tuple[AppRecord, bool]:
        try:
            app = parse_application(document)
        except SpecError as exc:
            raise Invalid(str(exc)) from exc
        async with self._lock:
            old = self.records.get(app.name)
            if old is not None and old.source is AppSource.CONTROL:
                raise Conflict(
                    f"application {app.name} is managed by control; "
                    "deploy it there or choose another name"
                )
            rec = self._record(app, AppSource.LOCAL)
            if old is not None and old.document == rec.document:
                return old, False
            await self.store.put_application(rec)
            self.records[app.name], self.apps[app.name] = rec, app
            await self._emit("app.applied", f"{app.name} {app.version} applied", app=app.name)
            await self._reschedule()
        return rec, True

    def _record(self, app: Application, source: AppSource) -> AppRecord:
        return AppRecord(
            name=app.name,
            version=app.version,
            tenant=app.tenant,
            source=source,
            document=application_to_document(app),
            updated=time.time(),
        )

    async def remove(self, name: str, purge: bool = False) -> None:
        async with self._lock:
            if name not in self.records:
                raise NotFound(f"application {name} does not exist")
            await self.store.delete_application(name)
            del self.records[name], self.apps[name]
            await self._reschedule()
        gone = await self.reconciler.wait_gone(name, timeout=120)
        await self.reconciler.resync()
        if purge and gone:
            for vol in await self.runtime.managed_volumes(app=name):
                await self.runtime.remove_volume(vol)
        await self._emit(
            "app.removed", f"{name} removed" + (" with its volumes" if purge else ""), app=name
        )

    async def apply_vaults(
        self, vaults: Sequence[Mapping[str, Any]], unseal: str = "local"
    ) -> None:
        """Control's vaults for this site (see `enforcer.secrets.vaults`), then reconcile. `unseal`
        is for entries that do not name theirs."""
        async with self._lock:
            await self.vaults.apply(vaults, unseal, site=self.site_name)
            await self._reschedule()

    async def _vault_key_arrived(self) -> None:
        async with self._lock:
            await self._reschedule()

    async def _control_desired(self, revision: int, apps: list[dict[str, Any]]) -> None:
        """Control's desired state for this site: its applications replace the previous ones."""
        async with self._lock:
            wanted: dict[str, Application] = {}
            for entry in apps:
                try:
                    app = parse_application(entry["spec"], tenant=entry.get("tenant", "system"))
                except (SpecError, KeyError) as exc:
                    await self._emit("control.invalid-app", f"{entry.get('name')}: {exc}")
                    continue
                local = self.records.get(app.name)
                if local is not None and local.source is AppSource.LOCAL:
                    await self._emit(
                        "control.name-clash",
                        f"application {app.name} from control clashes with a site-local "
                        "application of that name; the site-local one stays",
                        app=app.name,
                    )
                    continue
                wanted[app.name] = app
            for name, rec in list(self.records.items()):
                if rec.source is AppSource.CONTROL and name not in wanted:
                    await self.store.delete_application(name)
                    del self.records[name], self.apps[name]
            for name, app in wanted.items():
                rec = self._record(app, AppSource.CONTROL)
                old = self.records.get(name)
                if old is None or old.document != rec.document or old.tenant != rec.tenant:
                    await self.store.put_application(rec)
                    self.records[name], self.apps[name] = rec, app
            await self.store.set("control-revision", str(revision))
            await self._reschedule()

    async def apply_quotas(self, quotas: list[dict[str, Any]]) -> None:
        """Control's tenant quotas for this site; kept so an offline restart still holds them."""
        parsed = tuple(Quota.from_document(q) for q in quotas)
        if parsed == self.quotas:
            return
        async with self._lock:
            await self.store.set("control-quotas", json.dumps(quotas, sort_keys=True))
            self.quotas = parsed
            await self._reschedule()

    async def _status_loop(self) -> None:
        while True:
            if self.sync is not None:
                self.sync.set_status(
                    {"instances": [i.to_json() for i in self.instances()], "host": self.host_id}
                )
            await asyncio.sleep(2)

    def applications(self) -> list[AppRecord]:
        return sorted(self.records.values(), key=lambda r: r.name)

    def application(self, name: str) -> AppRecord:
        try:
            return self.records[name]
        except KeyError:
            raise NotFound(f"application {name} does not exist") from None

    def instances(self) -> list[InstanceStatus]:
        return self.reconciler.instances()

    # -- facade: streams -----------------------------------------------------------------
    async def logs(
        self, instance: str, container: str | None, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        desired = self.reconciler.desired.get(instance)
        if desired is None:
            raise NotFound(f"instance {instance} does not exist")
        name = container or desired.owner.name
        if name not in {c.name for c in desired.containers}:
            raise NotFound(f"instance {instance} has no container {name}")
        found = await self.runtime.list_managed(instance=instance, container=name)
        if not found:
            raise NotFound(f"container {name} of {instance} is not created yet")
        async for chunk in self.runtime.logs(found[0].id, tail, follow):
            yield chunk

    async def events(self, since: int, follow: bool) -> AsyncIterator[Event]:
        last = since
        while True:
            batch = await self.store.events_since(last)
            for ev in batch:
                last = ev.seq
                yield ev
            if batch and len(batch) == 1000:
                continue
            if not follow:
                return
            async with self._events:
                await self._events.wait_for(functools.partial(self._newer_than, last))

    def _newer_than(self, seq: int) -> bool:
        return self._last_seq > seq

    async def _emit(
        self,
        kind: str,
        message: str,
        *,
        app: str = "",
        instance: str = "",
        tenant: str = "",
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            ev = await self.store.add_event(
                kind, message, app=app, instance=instance, tenant=tenant, fields=fields
            )
        except StoreError as exc:
            log.error("event not stored (%s): %s", exc, message)
            return
        log.info("%s: %s", kind, message)
        async with self._events:
            self._last_seq = ev.seq
            self._events.notify_all()
        if self.sync is not None:
            self.sync.push_event(ev.to_json())

    # -- facade: state -------------------------------------------------------------------
    def host(self) -> dict[str, Any]:
        h = self.host_info
        return {
            "id": h.id,
            "labels": dict(h.labels),
            "cpus": h.cpus,
            "memory": h.memory,
            "devices": h.inventory.to_dict(),
            "device-monitoring": self.devices.monitoring,
            "warnings": list(self.warnings),
        }

    def site(self) -> dict[str, Any]:
        link: Any = "not enrolled (site-local)"
        if self.sync is not None:
            link = self.sync.link
        return {
            "name": self.site_name,
            "labels": dict(self.config.site.labels) | {"system/name": self.site_name},
            "hosts": [self.host_id],
            "leader": self.host_id,
            "control": link,
        }

    def health(self) -> dict[str, Any]:
        rt = self.reconciler
        checks = {
            "runtime": "available" if rt.runtime_ok else f"unavailable: {rt.runtime_error}",
            "store": "ok",
            "outbound-policy": "enforced" if not self.firewall.error else self.firewall.error,
        }
        return {
            "healthy": rt.runtime_ok,
            "runtime": checks["runtime"],
            "checks": checks,
            "version": __version__,
            "uptime": time.time() - self.started,
        }

    def metrics(self) -> str:
        return render_metrics(self.instances(), self.reconciler.runtime_ok, self.started)


def _log_if_failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %s", task.get_name(), task.exception(), exc_info=task.exception())


def _load_quotas(text: str | None) -> tuple[Quota, ...]:
    try:
        return tuple(Quota.from_document(q) for q in json.loads(text or "[]"))
    except (ValueError, KeyError, TypeError) as exc:
        log.error("stored tenant quotas are unreadable, not enforcing them: %s", exc)
        return ()


def _enrolled_site(state_dir: Path) -> str:
    """The site name of an enrolled enforcer, read without loading the TLS stack."""
    try:
        return str(json.loads((state_dir / "site" / "site.json").read_text())["site"])
    except (OSError, ValueError, KeyError):
        return ""


def run_daemon(config: EnforcerConfig) -> None:
    """`edge-enforcer run`: serve until SIGTERM/SIGINT, then stop without stopping containers."""
    logging.basicConfig(
        level=os.environ.get("EDGEWARD_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_main(config))


async def _main(config: EnforcerConfig) -> None:
    from enforcer.api.server import serve
    from enforcer.api.tenants import load_tenant_tokens

    daemon = Daemon(config)
    try:
        await daemon.start()
    except (StoreError, RuntimeUnavailable) as exc:
        raise SystemExit(f"edge-enforcer: error: {exc}") from exc
    token = None
    if config.api.listen:
        token = _api_token(Path(config.api.token_file))
    tenant_tokens = load_tenant_tokens(config)
    server = await serve(
        daemon, config.api.socket, config.api.listen, token, tenant_tokens=tenant_tokens
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "enforcer ready: host %s, site %s, api %s",
        daemon.host_id,
        daemon.site_name,
        config.api.socket,
    )
    await stop.wait()
    log.info("stopping (containers keep running)")
    await server.close()
    await daemon.stop()


def _api_token(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    import secrets

    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
