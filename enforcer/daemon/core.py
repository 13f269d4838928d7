"""The daemon itself: its parts made and started, scheduling, and the facade's calls.

`Daemon` implements `enforcer.facade.Enforcer` by handing each call to the part that does it.
Stopping the daemon never stops containers: the next start re-adopts them by their labels and
config hashes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from enforcer import __version__
from enforcer.api.metrics import Histogram, render_metrics
from enforcer.config.model import EnforcerConfig
from enforcer.daemon.cluster import ClusterPart
from enforcer.daemon.streams import StreamsPart
from enforcer.devices.inventory import Inventory
from enforcer.devices.watcher import DeviceWatcher
from enforcer.facade import AppRecord, InstanceStatus
from enforcer.link.control import ControlLink, enrolled_site
from enforcer.logs.errors import parse_rate
from enforcer.logs.forwarder import ErrorForwarder
from enforcer.logs.marks import ReadMarks
from enforcer.network.firewall import Firewall
from enforcer.network.mesh import SiteMesh
from enforcer.reconcile.instances import Context
from enforcer.reconcile.reconciler import Reconciler
from enforcer.reconcile.restarts import BackoffPolicy
from enforcer.runtime.docker import DockerRuntime
from enforcer.runtime.logstream import DockerLogs
from enforcer.schedule.hosts import host_state
from enforcer.secrets.files import SecretFiles
from enforcer.secrets.vaults import SiteVaults
from enforcer.site.applications import Applications
from enforcer.site.cluster.bootstrap import SiteStore
from enforcer.site.cluster.coordinator import Coordinator
from enforcer.site.cluster.prepull import images_for
from enforcer.site.cluster.shared import SharedRecords
from enforcer.site.cluster.site import (
    cluster_site_document,
    publish_control_apps,
    refresh_host_record,
    store_check,
)
from enforcer.site.desired import desired_state, newly_waiting
from enforcer.site.events import EventLog
from enforcer.site.hostinfo import HostInfo, default_host_id, gather_host_info
from enforcer.site.membership import Membership
from enforcer.site.quotas import SiteQuotas
from enforcer.site.status import health_document, host_document, site_document
from enforcer.site.store import Store

log = logging.getLogger(__name__)


class Daemon(StreamsPart, ClusterPart):
    def __init__(self, config: EnforcerConfig) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.host_id = config.host.id or default_host_id()
        self.site_name = config.site.name or socket.gethostname()
        self.store = Store(self.state_dir / "enforcer.db")
        self.events_log = EventLog(self.store)
        self._emit = self.events_log.emit
        self.membership = Membership(self.store, self.host_id)
        self.runtime = DockerRuntime(
            config.docker.host,
            config.reconcile.docker_parallelism,
            config.docker.timeout,
            pull_stall=config.docker.pull_stall_timeout,
            log_size=config.logs.max_size,
            log_files=config.logs.max_files,
        )
        self.firewall = Firewall(f"{self.host_id}:{self.state_dir}")
        self.devices = DeviceWatcher(config.devices.rules, self._devices_changed)
        self.host_info: HostInfo = gather_host_info(self.host_id, config.host.labels, Inventory())
        self.reconciler = Reconciler(
            self.runtime,
            self.store,
            Context(self.site_name, self.host_id, stop_grace=config.runtime.stop_grace),
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
        self.reconcile_durations = Histogram()
        self.reconciler.on_pass = self.reconcile_durations.observe
        self.vaults = SiteVaults(self.store, self.state_dir, emit=self._emit)
        self.vaults.on_key = self._vault_key_arrived
        self.secret_files = SecretFiles(config.secrets.dir)
        self.apps = Applications(self.store)
        self.control = ControlLink(
            self.state_dir,
            on_desired=self._control_desired,
            on_vaults=self.apply_vaults,
            on_quotas=self.apply_quotas,
            on_identity=self._enrolled_as,
            status=self._status_for_control,
            emit=self._emit,
            key_fetcher=self.vaults.set_fetcher,
            on_request=self._control_request,
        )
        self.log_streams = DockerLogs(config.docker.host)  # no thread per followed container
        self.error_forwarder = (
            ErrorForwarder(
                self.runtime.list_managed,
                self.log_streams,
                self._emit,
                host=self.host_id,
                rate=parse_rate(config.logs.error_rate),
                marks=ReadMarks(self.state_dir / "logs" / "read-marks.json"),
            )
            if config.logs.forward_errors
            else None
        )
        self.events_log.forward = self.control.push_event
        self.warnings: tuple[str, ...] = ()
        self.gpus: dict[str, tuple[str, ...]] = {}  # instance -> the GPUs assigned to it
        self.quotas = SiteQuotas(self.store)  # tenants' quotas from control
        self._lock = asyncio.Lock()  # apply/remove/schedule one at a time
        self.started = time.time()
        self.cluster: Coordinator | None = None  # a multi-host site ([cluster])
        self.mesh: SiteMesh | None = None  # its site network ([network] site-network)
        self.shared: SharedRecords | None = None  # its vaults and quotas, for every host
        self.site_store = SiteStore(config.cluster, self.state_dir, self.host_id, self.site_name)
        self.site_join_bundle = self.site_store.create_bundle  # `site join-bundle`

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self.site_store.preflight()  # etcd missing: nothing starts
        if self.site_store.wanted:  # joined, its member started, before anything else starts
            await self.site_store.start()
        await self.store.open()
        await self.events_log.open()
        await self.membership.join()
        if self.secret_files.root.exists():  # used before: on a tmpfs again, stale files go
            self.secret_files.prepare()
        await self.vaults.load()
        try:
            inventory = await self.devices.start()
        except Exception as exc:
            log.warning("device discovery unavailable: %s", exc)
            inventory = Inventory()
        self.host_info = gather_host_info(self.host_id, self.config.host.labels, inventory)
        await self.quotas.load()
        await self.apps.load()
        self.gpus = await self.store.gpu_assignments()
        self._set_site_name(enrolled_site(self.state_dir) or self.site_name)
        await self.reconciler.start()
        if self.error_forwarder is not None:
            self.reconciler.on_container = self.error_forwarder.notice
            self.error_forwarder.start()
        if self.site_store.gateway is not None:
            await self._join_cluster()
        async with self._lock:
            await self._reschedule()
        if self.cluster is not None:  # the site's identity is in its store; its leader syncs
            self.control.follow_site(self.cluster, self._identity_keys())
        await self.control.start(self.config.control.enrollment)
        await self._emit("enforcer.started", f"enforcer {__version__} started on {self.host_id}")

    def _set_site_name(self, name: str) -> None:
        self.site_name = name
        self.reconciler.ctx = dataclasses.replace(self.reconciler.ctx, site=name)

    async def _enrolled_as(self, site: str) -> None:
        if site != self.site_name or self.cluster is not None:  # SYS_SITE: the site's name
            async with self._lock:
                self._set_site_name(site)
                if self.shared is not None and self.cluster is not None:  # its key is here
                    await self.shared.follow(self.cluster.shared, site)
                await self._reschedule()

    async def enroll(self, bundle: str) -> dict[str, Any]:
        """Enroll the running enforcer and start syncing; Conflict when enrolled already."""
        identity = await self.control.enroll(bundle)
        return {"site": identity.site, "control": identity.url}

    async def stop(self) -> None:
        if self.mesh is not None:
            await self.mesh.stop()
        await self._stop_log_relay()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.control.stop()
        await self.site_store.stop()
        await self.membership.leave()
        await self.vaults.close()
        await self.reconciler.images.close()
        await self.reconciler.stop()
        await self.devices.stop()
        if self.error_forwarder is not None:
            await self.error_forwarder.stop()
        await self.log_streams.close()
        await self.store.close()
        self.runtime.close()

    # -- scheduling ----------------------------------------------------------------------
    def _devices_changed(self, inventory: Inventory) -> object:
        self.host_info = gather_host_info(self.host_id, self.config.host.labels, inventory)
        return self._reschedule_locked()

    async def _reschedule_locked(self) -> None:
        async with self._lock:
            await self._reschedule()

    async def _reschedule(self) -> None:
        """This host's desired instances, to the reconciler (under `_lock`)."""
        only = None
        if self.cluster is not None:  # the instances the site's leader gave this host
            # and the images of every instance it could be given, pulled ahead of time
            self.reconciler.images.prefetch(images_for(host_state(self.host_info), self.apps.apps))
            refresh_host_record(self.cluster, self.host_info)  # its devices may have changed
            self.cluster.status.leaving = self._leaving
            only = self.cluster.mine(self.apps.apps)
            if only is None:
                return
        state = desired_state(
            self.host_info,
            self.apps.apps,
            self.reconciler.desired,
            self.quotas.quotas,
            self.vaults,
            self.secret_files,
            self.reconciler.ctx,
            self.state_dir / "instances",
            self.gpus,
            self.apps.broken.values(),
            only=only,
        )
        if state.gpus != self.gpus:  # kept across restarts: an instance keeps its GPUs
            self.gpus = state.gpus
            await self.store.put_gpu_assignments(state.gpus)
        for warning in state.warnings:
            if warning not in self.warnings:
                log.warning("%s", warning)
        self.warnings = state.warnings
        for p in newly_waiting(self.reconciler.pending, state.pending):  # pending or failed
            kind, message = f"instance.{p.state.value}", f"{p.id}: {p.reason}"
            await self._emit(kind, message, app=p.app, instance=p.id, tenant=p.tenant)
        # the files first (on a thread: it writes them), then the workers
        await asyncio.to_thread(self.secret_files.sync, state.desired, state.held)
        self.reconciler.set_desired(state.desired, state.pending, self.apps.apps, state.held)

    # -- facade: applications ------------------------------------------------------------
    async def apply(self, document: Mapping[str, Any]) -> tuple[AppRecord, bool]:
        async with self._lock:
            rec, changed = await self.apps.apply_local(document)
            if self.cluster is not None:  # the site's: every host follows it
                await self.cluster.put_app(rec)
            if changed:
                await self._emit("app.applied", f"{rec.name} {rec.version} applied", app=rec.name)
                await self._reschedule()
        return rec, changed

    async def remove(self, name: str, purge: bool = False) -> None:
        async with self._lock:
            await self.apps.remove_local(name)
            if self.cluster is not None:
                await self.cluster.delete_app(name)
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
        """Control's vaults for this site (`enforcer.secrets.vaults`), then reconcile."""
        async with self._lock:
            if self.shared is not None:  # the leader hands them to every host of the site
                await self.shared.publish_vaults(vaults, unseal)
            await self.vaults.apply(vaults, unseal, site=self.site_name)
            await self._reschedule()

    async def _vault_key_arrived(self) -> None:
        await self._reschedule_locked()

    async def _control_desired(self, revision: int, apps: list[dict[str, Any]]) -> None:
        """Control's desired state for this site: its applications replace the previous ones."""
        async with self._lock:
            await self.apps.replace_from_control(apps, self._emit)
            if self.cluster is not None:  # the leader hands them to the site
                await publish_control_apps(self.cluster, self.apps.records)
            await self.store.set("control-revision", str(revision))
            await self._reschedule()

    async def apply_quotas(self, quotas: list[dict[str, Any]]) -> None:
        """Control's tenant quotas for this site."""
        if self.shared is not None:  # the leader hands them to every host of the site
            await self.shared.publish_quotas(quotas)
        if SiteQuotas.parse(quotas) != self.quotas.quotas:
            async with self._lock:
                await self.quotas.replace(quotas)
                await self._reschedule()

    def _leaving(self) -> frozenset[str]:
        """The instances this host still stops that it no longer runs (a move waits on them)."""
        rc = self.reconciler
        return frozenset(i for i, w in rc.workers.items() if i not in rc.desired and not w.done)

    def _status_for_control(self) -> dict[str, Any]:
        if self.cluster is not None:  # the leader reports every host's instances
            return {"instances": self.cluster.status.site(), "host": self.host_id}
        return {"instances": [i.to_json() for i in self.instances()], "host": self.host_id}

    def applications(self) -> list[AppRecord]:
        return self.apps.all()

    def application(self, name: str) -> AppRecord:
        return self.apps.get(name)

    def instances(self) -> list[InstanceStatus]:
        return self.reconciler.instances()

    # -- facade: streams -----------------------------------------------------------------
    # -- facade: state -------------------------------------------------------------------
    def host(self) -> dict[str, Any]:
        return host_document(self.host_info, self.devices.monitoring, self.warnings)

    async def site(self) -> dict[str, Any]:
        labels = self.config.site.labels
        if self.cluster is not None:
            link = self.control.link()
            doc = await cluster_site_document(self.site_name, labels, self.cluster, link)
            if self.mesh is not None:
                doc["network"] = self.mesh.status()
            return doc
        return await site_document(self.site_name, labels, self.membership, self.control.link())

    async def health(self) -> dict[str, Any]:
        rt = self.reconciler
        doc = await health_document(
            self.store,
            runtime_error=None if rt.runtime_ok else rt.runtime_error,
            link=self.control.link(),
            outbound=self.firewall.status,
            started=self.started,
        )
        if self.cluster is not None:  # the site store: ok, quorum lost since ..., cut off
            doc["checks"]["site-store"] = store_check(self.cluster)
        if self.mesh is not None:
            doc["checks"]["site-network"] = self.mesh.check()
        return doc

    def metrics(self) -> str:
        return render_metrics(
            self.instances(), self.reconciler.runtime_ok, self.started, self.reconcile_durations
        )
