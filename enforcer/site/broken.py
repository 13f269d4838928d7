"""What cannot run, shown as failed with the reason — never raised out of the daemon.

An application stored by an older version may no longer validate (an undefined ``${NAME}``
that the older validator let through): it is kept (``rm`` removes it), its instances show as
failed with the validator's message, and the enforcer starts as usual. Which instances it has
is read from the stored document as far as it goes (its services, replicas and mode); where
that says nothing, one entry named after the application stands for them.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from enforcer.facade import AppRecord, InstanceState, InstanceStatus
from enforcer.shared.spec.limits import MAX_REPLICAS, MAX_SERVICES
from enforcer.shared.spec.model import Mode

__all__ = ["BrokenApp", "failed_instance", "stored_instances"]


@dataclass(frozen=True)
class BrokenApp:
    """A stored application that cannot be parsed any more."""

    name: str
    tenant: str
    version: str
    reason: str
    document: Mapping[str, Any]

    @classmethod
    def of(cls, rec: AppRecord, reason: str) -> BrokenApp:
        version = rec.version if isinstance(rec.version, str) else ""
        return cls(rec.name, rec.tenant, version, reason, rec.document)

    def statuses(self, host: str) -> dict[str, InstanceStatus]:
        """Its instances on `host`, each failed with the reason."""
        return {
            iid: failed_instance(iid, self.name, service, self.tenant, self.version, self.reason)
            for service, iid in stored_instances(self.name, self.document, host)
        }


def stored_instances(app: str, document: Mapping[str, Any], host: str) -> list[tuple[str, str]]:
    """(service, instance id) of each instance that `document` asks for on `host`, as far as
    the document can be read; ``[("", app)]`` where it cannot."""
    services = document.get("services") if isinstance(document, Mapping) else None
    out: list[tuple[str, str]] = []
    for svc in services[:MAX_SERVICES] if isinstance(services, list) else ():
        name = svc.get("name") if isinstance(svc, Mapping) else None
        if not isinstance(name, str) or not name:
            continue
        prefix = f"{app}.{name}."
        if svc.get("mode") == Mode.ONE_PER_MATCHING_HOST.value:
            out.append((name, prefix + host))
            continue
        replicas = svc.get("replicas", 1)
        count = replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else 1
        out.extend((name, f"{prefix}{n}") for n in range(max(0, min(count, MAX_REPLICAS))))
    return out or [("", app)]


def failed_instance(
    iid: str, app: str, service: str, tenant: str, version: str, reason: str
) -> InstanceStatus:
    return InstanceStatus(
        id=iid,
        app=app,
        service=service,
        tenant=tenant,
        host="",
        version=version,
        state=InstanceState.FAILED,
        ready=False,
        restarts=0,
        reason=reason,
    )
