"""The hosts of a multi-host site as `GET /v1/site` shows them, read from the site store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from enforcer.site.cluster import records as keys
from enforcer.site.kv.election import current_leader
from enforcer.site.kv.registry import live_hosts

if TYPE_CHECKING:
    from enforcer.site.cluster.coordinator import Coordinator

__all__ = ["site_hosts"]


async def site_hosts(c: Coordinator) -> tuple[list[dict[str, Any]], str | None]:
    """The hosts as `GET /v1/site` shows them, and the leader's id. Raises KVError."""
    live = await live_hosts(c.kv, keys.HOSTS)
    leader = await current_leader(c.kv, keys.ELECTION)
    shown = []
    for h in live:
        left = await c.kv.time_to_live(h.lease) if h.lease else None
        age = None if left is None else round(max(0.0, c.ttl - left), 3)
        shown.append({
            "id": h.record.id,
            "address": h.record.address,
            "role": h.record.role,
            "state": "alive",
            "lease-age": age,
        })  # fmt: skip
    alive = {h.record.id for h in live}
    known = set(c.assignments.instances.values()) if c.assignments else set()
    for host in sorted((known | set(c.gone_at)) - alive):  # seen to go, or assigned
        shown.append({"id": host, "address": "", "role": "", "state": "dead", "lease-age": None})
    shown.sort(key=lambda h: str(h["id"]))  # by id: a host that re-registered keeps its place
    return shown, leader.candidate if leader else None
