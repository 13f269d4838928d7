"""The daemon's streams: an instance's logs (for `edge-enforcer logs` and control's log
requests) and the site's events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from enforcer.facade import Event, NotFound
from enforcer.logs.requests import answer_log_request

if TYPE_CHECKING:
    from enforcer.reconcile.reconciler import Reconciler
    from enforcer.runtime.docker import DockerRuntime
    from enforcer.runtime.logstream import DockerLogs
    from enforcer.site.cluster.coordinator import Coordinator
    from enforcer.site.cluster.logrelay import LogRelay
    from enforcer.site.events import EventLog


class StreamsPart:
    """Part of `enforcer.daemon.core.Daemon`."""

    host_id: str
    site_name: str
    reconciler: Reconciler
    runtime: DockerRuntime
    log_streams: DockerLogs
    events_log: EventLog
    cluster: Coordinator | None
    log_relay: LogRelay | None

    async def logs(
        self, instance: str, container: str | None, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        container_id = await self._log_container(instance, container)
        async for chunk in self.runtime.logs(container_id, tail, follow):
            yield chunk

    async def _log_container(self, instance: str, container: str | None) -> str:
        """The id of the container whose logs `logs` reads (NotFound says why there is none)."""
        desired = self.reconciler.desired.get(instance)
        if desired is None:
            raise NotFound(f"instance {instance} does not exist")
        name = container or desired.owner.name
        if name not in {c.name for c in desired.containers}:
            raise NotFound(f"instance {instance} has no container {name}")
        found = await self.runtime.list_managed(instance=instance, container=name)
        if not found:
            raise NotFound(f"container {name} of {instance} is not created yet")
        return found[0].id

    async def _control_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """A log request of control's, answered from this host's engine, or relayed to the
        host of the site that runs the instance."""
        return await answer_log_request(
            request, self._log_container, self.log_streams, self.site_name, self._runs_on,
            self._ask_host,
        )  # fmt: skip

    async def _relayed_request(self, request: Any) -> dict[str, Any]:
        """A log request the site's leader relayed to this host: answered from its engine."""
        return await answer_log_request(
            request, self._log_container, self.log_streams, self.site_name
        )

    async def _ask_host(self, host: str, request: Any) -> dict[str, Any]:
        if self.log_relay is None:
            return {"lines": [], "error": f"this host is in no multi-host site with {host}"}
        return await self.log_relay.ask(host, request, self.site_name)

    def _runs_on(self, instance: str) -> str | None:
        """The other host of this multi-host site that last reported running `instance`, else
        the one the leader assigned it to."""
        if self.cluster is None:
            return None
        for host, found in self.cluster.status.by_host.items():
            if host != self.host_id and any(i.get("id") == instance for i in found):
                return host
        assigned = self.cluster.assignments
        to = assigned.instances.get(instance) if assigned is not None else None
        return to if to != self.host_id else None

    def events(self, since: int, follow: bool) -> AsyncIterator[Event]:
        return self.events_log.since(since, follow)
