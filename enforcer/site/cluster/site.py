"""A multi-host site's `GET /v1/site` and this host's record, from the site store's state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from enforcer.facade import AppRecord, AppSource
from enforcer.schedule.hosts import HostInfo, host_state
from enforcer.shared.spec.parse import parse_application
from enforcer.site.applications import Applications
from enforcer.site.broken import BrokenApp
from enforcer.site.cluster.coordinator import Coordinator
from enforcer.site.kv.base import KVError
from enforcer.site.kv.registry import HostRecord
from enforcer.site.status import site_view

__all__ = [
    "cluster_site_document",
    "host_record",
    "mirror_apps",
    "publish_control_apps",
    "refresh_host_record",
    "store_check",
]


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


def refresh_host_record(cluster: Coordinator, info: HostInfo) -> None:
    """This host's devices or labels changed: the site's leader places by the new record."""
    old = cluster.registration.record
    cluster.set_record(host_record(info, old.address, old.role))


async def cluster_site_document(
    name: str, labels: Mapping[str, str], cluster: Coordinator, link: Mapping[str, Any]
) -> dict[str, Any]:
    health = await cluster.kv.health()
    lost = cluster.quorum.describe()
    store: dict[str, Any] = {
        "kind": health.engine,
        "state": "quorum lost" if lost else "ok" if health.ok else "failed",
        "error": lost or (None if health.ok else health.detail),
        "revision": health.revision,
        "fenced": cluster.fenced,
    }
    doc = await site_view(name, labels, cluster.view, (KVError,), store, link)
    if lost:  # the hosts cannot be read then: the reason is the quorum
        doc["store"] = {**doc["store"], "state": "quorum lost", "error": lost}
    return doc


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


async def publish_control_apps(cluster: Coordinator, records: Mapping[str, AppRecord]) -> None:
    """The leader's applications from control (`records`: after control's desired state was
    applied) into the site store; control's that it no longer sends, out. Site-local ones are
    left alone: any host may have applied one the leader has not mirrored yet."""
    for name, rec in records.items():
        old = cluster.apps.get(name)
        if rec.source is AppSource.CONTROL and (
            old is None
            or (old.document, old.tenant, old.source) != (rec.document, rec.tenant, rec.source)
        ):
            await cluster.put_app(rec)
    for name, old in list(cluster.apps.items()):
        if old.source is AppSource.CONTROL and name not in records:
            await cluster.delete_app(name)


def store_check(cluster: Coordinator) -> str:
    """The site store's line in `GET /v1/site/health`'s checks."""
    lost = cluster.quorum.describe()
    if lost:
        return f"{lost}: every host runs on as it is and changes nothing"
    if cluster.fenced and cluster.assignments is not None:
        return "cut off: this host runs only its one-per-matching-host instances"
    return "ok"
