"""What an instance needs on the host before its containers: its application's network (made
once however many instances ask at the same time), its volumes and its file directories."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from enforcer.reconcile.instances import Context, DesiredInstance, bridge_name
from enforcer.reconcile.runtime import Runtime

# a multi-host site's network (`enforcer.network.mesh`): the subnet of a new application
# network, given the subnets of those there are
SubnetFor = Callable[[list[str]], Awaitable[str]]


class Preparer:
    def __init__(self, runtime: Runtime, ctx: Context) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self.subnet: SubnetFor | None = None  # None: Docker's own address pools
        self._lock = asyncio.Lock()
        self._networks: set[str] = set()  # made (or found) since the engine was last seen

    def forget(self, network: str | None = None) -> None:
        """`network` was removed — or, with None, the engine came back and may have lost any."""
        if network is None:
            self._networks.clear()
        else:
            self._networks.discard(network)

    async def prepare(self, d: DesiredInstance) -> None:
        if d.network not in self._networks:
            async with self._lock:
                if d.network not in self._networks:  # not made by another instance meanwhile
                    await self._network(d)
                    self._networks.add(d.network)
        await self._volumes_and_directories(d)

    async def _network(self, d: DesiredInstance) -> None:
        bridge = bridge_name(self.ctx.host, d.tenant, d.app)
        labels = {"edgeward.app": d.app, "edgeward.tenant": d.tenant}
        if self.subnet is None:
            await self.runtime.ensure_network(d.network, bridge, labels)
        else:
            await self.runtime.ensure_network(d.network, bridge, labels, await self._subnet())

    async def _subnet(self) -> str:
        assert self.subnet is not None
        nets = await self.runtime.managed_networks()
        taken = [c["Subnet"] for n in nets for c in (n.get("IPAM") or {}).get("Config") or []
                 if c.get("Subnet")]  # fmt: skip
        return await self.subnet(taken)

    async def _volumes_and_directories(self, d: DesiredInstance) -> None:
        labels = {"edgeward.app": d.app, "edgeward.tenant": d.tenant, "edgeward.instance": d.id}
        for vol in d.ephemeral_volumes:
            await self.runtime.ensure_volume(vol, {**labels, "edgeward.ephemeral": "true"})
        for vol in d.persistent_volumes:
            await self.runtime.ensure_volume(vol, {**labels, "edgeward.persistent": "true"})
        for c in d.containers:
            for m in c.mounts:
                if m.kind == "bind" and m.source.startswith(d.files_dir):
                    Path(m.source).mkdir(parents=True, exist_ok=True)
