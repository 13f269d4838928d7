"""`GET /v1/site` and `GET /v1/health` from real state: the store is asked, not assumed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from enforcer import __version__
from enforcer.schedule.hosts import HostInfo
from enforcer.site.membership import Membership
from enforcer.site.store import Store, StoreError

__all__ = ["health_document", "host_document", "site_document", "store_state"]


async def store_state(store: Store) -> dict[str, Any]:
    """The site store's health, from reading every table."""
    error = await store.check()
    return {
        "kind": "sqlite",
        "path": str(store.path),
        "state": "failed" if error else "ok",
        "error": error,
    }


async def site_document(
    name: str,
    labels: Mapping[str, str],
    membership: Membership,
    link: Mapping[str, Any],
) -> dict[str, Any]:
    store = await store_state(membership.store)
    return await site_view(
        name, labels, membership.view, (StoreError, sqlite3.Error, ValueError), store, link
    )


async def site_view(
    name: str,
    labels: Mapping[str, str],
    view: Callable[[], Awaitable[tuple[list[dict[str, Any]], str | None]]],
    store_errors: tuple[type[Exception], ...],
    store: dict[str, Any],
    link: Mapping[str, Any],
) -> dict[str, Any]:
    """`GET /v1/site`: the hosts and leader that `view` reads from the site store (a store that
    fails to answer says so in `store`), the site's labels, and the control link."""
    hosts: list[dict[str, Any]] = []
    leader: str | None = None
    try:
        hosts, leader = await view()
    except store_errors as exc:
        store = {**store, "state": "failed", "error": store["error"] or str(exc)}
    return {
        "name": name,
        "labels": dict(labels) | {"system/name": name},
        "hosts": hosts,
        "leader": leader,
        "store": store,
        "control": dict(link),
    }


async def health_document(
    store: Store,
    *,
    runtime_error: str | None,
    link: Mapping[str, Any],
    outbound: str,
    started: float,
) -> dict[str, Any]:
    """`runtime_error` None: Docker answers. Healthy: Docker answers and the store reads.
    The control link and the outbound policy (`outbound`: "enforced" or why not) are reported,
    not counted: a site runs on without control, and the policy fails closed on its own."""
    store_error = await store.check()
    runtime = "available" if runtime_error is None else f"unavailable: {runtime_error}"
    checks = {
        "runtime": runtime,
        "store": "ok" if not store_error else f"failed: {store_error}",
        "outbound-policy": outbound,
    }
    return {
        "healthy": runtime_error is None and not store_error,
        "runtime": runtime,
        "checks": checks,
        "control": str(link.get("description") or link.get("state") or "-"),
        "version": __version__,
        "uptime": time.time() - started,
    }


def host_document(host: HostInfo, monitoring: bool, warnings: Sequence[str]) -> dict[str, Any]:
    return {
        "id": host.id,
        "labels": dict(host.labels),
        "cpus": host.cpus,
        "memory": host.memory,
        "devices": host.inventory.to_dict(),
        "device-monitoring": monitoring,
        "warnings": list(warnings),
    }
