"""The daemon's part in a multi-host site: following the site's store, the site network, and
joining and leaving the site while running."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enforcer.facade import Conflict
from enforcer.network.mesh import SiteMesh
from enforcer.network.sitenet import SlicePlan, interface_name
from enforcer.network.wireguard import WireGuard
from enforcer.site.cluster.coordinator import Coordinator
from enforcer.site.cluster.identity import SiteIdentityKeys
from enforcer.site.cluster.leaving import leave_site
from enforcer.site.cluster.logrelay import LogRelay
from enforcer.site.cluster.shared import SharedRecords
from enforcer.site.cluster.site import host_record, mirror_apps
from enforcer.site.kv.base import KVError

if TYPE_CHECKING:
    from enforcer.config.model import EnforcerConfig
    from enforcer.facade import InstanceStatus
    from enforcer.link.control import ControlLink
    from enforcer.reconcile.reconciler import Reconciler
    from enforcer.secrets.vaults import SiteVaults
    from enforcer.site.applications import Applications
    from enforcer.site.cluster.bootstrap import SiteStore
    from enforcer.site.hostinfo import HostInfo
    from enforcer.site.quotas import SiteQuotas


class ClusterPart:
    """Part of `enforcer.daemon.core.Daemon`."""

    config: EnforcerConfig
    state_dir: Path
    host_id: str
    site_name: str
    host_info: HostInfo
    apps: Applications
    vaults: SiteVaults
    quotas: SiteQuotas
    control: ControlLink
    reconciler: Reconciler
    site_store: SiteStore
    cluster: Coordinator | None
    shared: SharedRecords | None
    mesh: SiteMesh | None
    log_relay: LogRelay | None = None  # control's log requests other hosts relay to this one
    _lock: asyncio.Lock

    if TYPE_CHECKING:  # the daemon's own

        async def _reschedule(self) -> None: ...

        async def _relayed_request(self, request: Any) -> dict[str, Any]: ...

        def instances(self) -> list[InstanceStatus]: ...

    async def _join_cluster(self) -> None:
        """A multi-host site: follow its store; until the assignments are read, this host's
        engine is left as it is."""
        from enforcer.site.kv.etcd import EtcdKV

        cfg, joined = self.config.cluster, self.site_store.membership
        assert self.site_store.gateway is not None
        kv = EtcdKV(self.site_store.gateway)
        address, role = (joined.advertise, joined.role) if joined else (cfg.advertise, cfg.role)
        record = host_record(self.host_info, address, role)
        self.cluster = Coordinator(
            kv,
            record,
            ttl=cfg.lease_ttl,
            on_change=self._cluster_changed,
            statuses=lambda: [i.to_json() for i in self.instances()],
        )
        self.shared = SharedRecords(kv, self.vaults, self.quotas)
        try:
            await self.cluster.seed_apps(self.apps.all())
        except KVError as exc:
            endpoints = ", ".join(self.site_store.gateway.endpoints)
            raise KVError(f"cannot reach the site store ({endpoints}): {exc}") from exc
        await self.cluster.start()
        self.log_relay = LogRelay(kv, self.host_id, self._relayed_request)
        self.log_relay.start()
        self._start_site_network(record.address)

    async def _stop_log_relay(self) -> None:
        """Before the site store closes (stop, leave)."""
        if self.log_relay is not None:
            await self.log_relay.stop()
            self.log_relay = None

    def _start_site_network(self, address: str) -> None:
        """A multi-host site's network ([network] site-network), when configured."""
        net, cluster = self.config.network, self.cluster
        if not net.site_network or cluster is None or self.mesh is not None:
            return
        reg = cluster.registration
        lease = lambda: reg.lease.id if reg.registered.is_set() else None  # noqa: E731
        wg = WireGuard(interface_name(self.host_id), self.state_dir / "network", net.wireguard_port)
        plan = SlicePlan.parse(net.range, net.host_prefix, net.network_prefix)
        rc = self.reconciler
        nets = rc.runtime.managed_networks
        self.mesh = SiteMesh(cluster.kv, self.host_id, address, wg, plan, lease, rc.names, nets,
                             site=self.site_store.site)  # fmt: skip
        self.mesh.start()
        self.reconciler.preparer.subnet = self.mesh.subnet

    async def site_join(self, bundle: str, advertise: str) -> dict[str, Any]:
        """`edge-enforcer site join`: this running one-host site joins a multi-host one; its
        applications go into the site's store, and its containers keep running."""
        joined, warnings = await self.site_store.join_running(
            bundle, advertise or self.config.cluster.advertise
        )
        await self._join_cluster()
        assert self.cluster is not None  # the link follows the site now, without a restart
        await self.control.join_site(self.cluster, self._identity_keys())
        return {"site": joined.site, "host": self.host_id, "role": joined.role,
                "warnings": warnings}  # fmt: skip

    async def site_leave(self) -> dict[str, Any]:
        """`edge-enforcer site leave`: its instances move off first (`leaving`); then it goes
        on as a one-host site with nothing to run."""
        if self.cluster is None:
            raise Conflict("this host is in no multi-host site: there is nothing to leave")
        rc = self.reconciler
        stopped = lambda: not rc.desired and all(w.done for w in rc.workers.values())  # noqa: E731

        async def drained() -> None:  # its instances moved: nothing left to answer for
            await self._stop_log_relay()
            await self.control.leave_site()

        answer = await leave_site(self.cluster, self.site_store, stopped, drained)
        self.cluster = self.shared = None
        if self.mesh is not None:  # a one-host site again: no tunnel, no process
            await self.mesh.leave()
            self.mesh, self.reconciler.preparer.subnet = None, None
        async with self._lock:  # the site's applications are not this host's any more
            await mirror_apps(self.apps, {})
            await self._reschedule()
        warnings = ["[cluster] advertise is set in the configuration: remove it, or the next "
                    "start makes this host the first controller of a new site"]  # fmt: skip
        return {**answer, "warnings": warnings if self.config.cluster.advertise else []}

    def _identity_keys(self) -> SiteIdentityKeys:
        assert self.cluster is not None
        path = self.state_dir / "cluster" / "host-key.pem"  # read or made when first needed
        return SiteIdentityKeys.at(self.cluster.kv, self.host_id, path)

    async def _cluster_changed(self) -> None:
        assert self.cluster is not None
        async with self._lock:
            await mirror_apps(self.apps, self.cluster.apps)
            if self.shared is not None:  # control's vaults and quotas, from the leader
                await self.shared.follow(self.cluster.shared, self.site_name)
            await self._reschedule()
