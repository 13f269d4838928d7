"""What both stores share about site rows: their columns, reading them, and the checks made on
an enrollment secret's row (no I/O here)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from control.model import Deployment, Forbidden, Site
from control.store.base import UNKNOWN_SECRET

EVENTS_KEPT_PER_SITE = 1000
STATUS_GROUP = 1000  # status batches committed in one transaction at most

SITE_COLUMNS = (
    "name, labels, created, tenants, cert_serial, enrolled, revoked, revision, "
    "digest, last_seq, last_contact, status, status_time, ready, failed, public_key"
)


def dumps(value: Any) -> str:
    """JSON as both stores keep it: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def sites_from_rows(rows: Sequence[Any]) -> list[Site]:
    return [
        Site(
            name=r[0],
            labels=json.loads(r[1]),
            created=r[2],
            tenants=json.loads(r[3]),
            cert_serial=r[4],
            enrolled=r[5],
            revoked=bool(r[6]),
            revision=r[7],
            digest=r[8],
            last_seq=r[9],
            last_contact=r[10],
            status=json.loads(r[11]) if r[11] else None,
            status_time=r[12],
            ready=json.loads(r[13]),
            failed=json.loads(r[14]),
            public_key=r[15],
        )
        for r in rows
    ]


def check_enrollment_row(row: Any, site: str, now: float) -> None:
    """Forbidden unless `row` (site, expires, used) is an unused, unexpired secret of `site`;
    an unknown secret and another site's secret get the same answer."""
    if row is None or row[0] != site:
        raise Forbidden(UNKNOWN_SECRET)
    if row[2] is not None:
        raise Forbidden(
            f"the enrollment bundle was already used at {_iso(row[2])}; "
            "a bundle works once (issue a new one)"
        )
    if row[1] < now:
        raise Forbidden(f"the enrollment bundle expired at {_iso(row[1])} (issue a new one)")


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def deployments_from_rows(rows: Sequence[Any]) -> list[Deployment]:
    """(name, tenant, document, created, updated, rollout) rows as deployments."""
    return [
        Deployment(r[0], r[1], json.loads(r[2]), r[3], r[4], json.loads(r[5]) if r[5] else None)
        for r in rows
    ]
