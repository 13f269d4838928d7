"""What a multi-host site keeps in its site store, and how (pure).

/site/hosts/<host>              a host's record, under its lease (`enforcer.site.kv.registry`)
/site/election/leader/<lease>   the candidates for leadership (`enforcer.site.kv.election`)
/site/apps/<name>               an application record (JSON, as `AppRecord.to_json`)
/site/assignments               {"leader": host, "assignments": {instance: host}}
/site/status/<host>             a host's instances' status (JSON list), under its lease
/site/vaults, /site/quotas      control's vaults (sealed) and quotas (`shared`)
/site/events/<host>/<seq>       a host's event for control, until the leader forwarded it
/site/logs/requests/<host>/<id> control's log request, relayed by the leader to the host that
/site/logs/replies/<id>         runs the instance, and its reply; both under the request's lease
                                (`enforcer.site.cluster.logrelay`)
/site/network/...               the site network's range, slices, peers, names and subnets
                                (`enforcer.network.sitenet`, `enforcer.network.names`)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from enforcer.facade import AppRecord, AppSource
from enforcer.shared.spec.model import Application
from enforcer.shared.spec.parse import parse_application

log = logging.getLogger(__name__)

__all__ = [
    "APPS",
    "ASSIGNMENTS",
    "ELECTION",
    "EVENTS",
    "HOSTS",
    "LOGS",
    "QUOTAS",
    "ROOT",
    "SHARED",
    "STATUS",
    "VAULTS",
    "Assignments",
    "InvalidRecord",
    "app_from_json",
    "app_to_json",
    "parsed_apps",
]

ROOT = "/site/"
HOSTS = "/site/hosts/"
ELECTION = "/site/election/leader/"
APPS = "/site/apps/"
ASSIGNMENTS = "/site/assignments"
STATUS = "/site/status/"
VAULTS = "/site/vaults"
QUOTAS = "/site/quotas"
SHARED = (VAULTS, QUOTAS)
EVENTS = "/site/events/"
LOGS = "/site/logs/"


class InvalidRecord(ValueError):
    """A record in the site store is malformed; str() names the key and what is wrong."""


def app_to_json(rec: AppRecord) -> bytes:
    return json.dumps(rec.to_json(), sort_keys=True).encode()


def parsed_apps(records: Mapping[str, AppRecord]) -> dict[str, Application]:
    """The applications the leader places: one that does not parse is left out, and logged."""
    out = {}
    for name, rec in records.items():
        try:
            out[name] = parse_application(rec.document, tenant=rec.tenant)
        except Exception as exc:  # that application is left out, no more
            log.error("application %s cannot be placed: %s", name, exc)
    return out


def app_from_json(key: str, data: bytes) -> AppRecord:
    try:
        raw = json.loads(data)
        return AppRecord(
            name=str(raw["name"]),
            version=str(raw["version"]),
            tenant=str(raw["tenant"]),
            source=AppSource(raw["source"]),
            document=dict(raw["spec"]),
            updated=float(raw["updated"]),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidRecord(f"{key}: not an application record ({exc})") from exc


@dataclass(frozen=True)
class Assignments:
    """The leader's decision: which host runs which instance."""

    leader: str = ""
    instances: Mapping[str, str] = field(default_factory=dict)  # instance id -> host id

    def on_host(self, host: str) -> frozenset[str]:
        return frozenset(i for i, h in self.instances.items() if h == host)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"leader": self.leader, "assignments": dict(self.instances)}
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Assignments:
        try:
            raw = json.loads(data)
            instances = raw["assignments"]
            if not isinstance(instances, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in instances.items()
            ):
                raise TypeError("assignments must map instance ids to host ids")
            return cls(str(raw.get("leader", "")), dict(sorted(instances.items())))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise InvalidRecord(f"{ASSIGNMENTS}: not an assignment record ({exc})") from exc
