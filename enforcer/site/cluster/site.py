"""A multi-host site's `GET /v1/site` and this host's record, from the site store's state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from enforcer.facade import AppRecord
from enforcer.schedule.hosts import HostInfo, host_state
from enforcer.shared.spec.parse import parse_application
from enforcer.site.applications import Applications
from enforcer.site.broken import BrokenApp
from enforcer.site.cluster.coordinator import Coordinator
from enforcer.site.kv.base import KVError
from enforcer.site.kv.registry import HostRecord
from enforcer.site.status import site_view

__all__ = ["cluster_site_document", "host_record", "mirror_apps"]


def host_record(info: HostInfo, address: str, role: str) -> HostRecord:
    """This host as the site's other hosts (and its leader's scheduler) see it."""
    state = host_state(info)
    return HostRecord(
        id=info.id,
        address=address,
        role=role,
        labels=info.labels,
        device_labels=tuple(sorted(state.device_labels)),
        defined_device_labels=tuple(sorted(state.defined_device_labels)),
        gpu_ids=state.gpu_ids,
        cpus=float(info.cpus),
        memory=int(info.memory),
    )


async def cluster_site_document(
    name: str, labels: Mapping[str, str], cluster: Coordinator, link: Mapping[str, Any]
) -> dict[str, Any]:
    health = await cluster.kv.health()
    store: dict[str, Any] = {
        "kind": health.engine,
        "state": "ok" if health.ok else "failed",
        "error": None if health.ok else health.detail,
        "revision": health.revision,
        "fenced": cluster.fenced,
    }
    return await site_view(name, labels, cluster.view, (KVError,), store, link)


async def mirror_apps(apps: Applications, site: Mapping[str, AppRecord]) -> bool:
    """Make this host's applications (its store and memory) the site's; whether any changed.
    One that does not validate is kept as broken, as `Applications.load` does."""
    changed = False
    for name in [n for n in apps.records if n not in site]:
        await apps.store.delete_application(name)
        del apps.records[name]
        apps.apps.pop(name, None)
        apps.broken.pop(name, None)
        changed = True
    for name, rec in site.items():
        old = apps.records.get(name)
        if old is not None and (old.document, old.tenant, old.source) == (
            rec.document,
            rec.tenant,
            rec.source,
        ):
            continue
        await apps.store.put_application(rec)
        apps.records[name] = rec
        apps.apps.pop(name, None)
        apps.broken.pop(name, None)
        try:
            apps.apps[name] = parse_application(rec.document, tenant=rec.tenant)
        except Exception as exc:  # that application fails, no more
            reason = f"the site's application does not validate: {exc}"
            apps.broken[name] = BrokenApp.of(rec, reason)
        changed = True
    return changed
