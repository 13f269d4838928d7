"""Control's records and the errors its operations raise.

Each error carries the HTTP status and the error code the API answers with, so the mapping is
made in one place.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from enforcer.shared.labels import is_label_word

SYSTEM_TENANT = "system"
NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


class ControlError(Exception):
    """An operation refused; `status` and `code` go into the API's error answer."""

    status = 400
    code = "bad-request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(ControlError):
    """A request that cannot be understood (400); the message names what is wrong."""


class Invalid(ControlError):
    status = 422
    code = "invalid"

    def __init__(self, message: str, errors: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class Unauthorized(ControlError):
    status = 401
    code = "unauthorized"


class Forbidden(ControlError):
    status = 403
    code = "forbidden"


class NotFound(ControlError):
    status = 404
    code = "not-found"


class Conflict(ControlError):
    status = 409
    code = "conflict"


class OutOfOrder(ControlError):
    status = 409
    code = "out-of-order"


def check_name(name: str, what: str) -> None:
    """Raise Invalid unless `name` is a DNS label."""
    if not isinstance(name, str) or len(name) > 63 or not NAME.fullmatch(name):
        raise Invalid(
            f"{what} name {name!r} is not a DNS label "
            "(lower-case letters, digits and -, at most 63)"
        )


@dataclass(frozen=True)
class Tenant:
    name: str
    parent: str | None
    created: float
    quota: dict[str, float] = field(default_factory=dict)  # per site: cpus, memory, gpus


@dataclass
class Site:
    name: str
    labels: dict[str, str]  # user labels; `all_labels` adds the system labels
    created: float
    tenants: list[str] = field(default_factory=list)  # tenants the site is assigned to
    cert_serial: str = ""  # of the current site certificate; "" until enrolled
    enrolled: float | None = None
    revoked: bool = False
    revision: int = 0  # of the site's desired state
    digest: str = ""  # of the site's desired state
    last_seq: int = 0  # last status batch applied
    last_contact: float | None = None
    status: dict[str, Any] | None = None  # last pushed status snapshot
    status_time: float | None = None
    ready: dict[str, float] = field(default_factory=dict)  # app -> all ready since
    failed: dict[str, str] = field(default_factory=dict)  # app -> why it failed
    public_key: str = ""  # PEM of the site certificate's public key (vaults are sealed to it)

    @property
    def all_labels(self) -> dict[str, str]:
        return {**self.labels, "system/name": self.name}

    @property
    def state(self) -> str:
        if self.revoked:
            return "revoked"
        return "enrolled" if self.enrolled is not None else "pending"

    @property
    def applied_revision(self) -> int | None:
        if self.status is None:
            return None
        value = self.status.get("revision")
        return value if isinstance(value, int) else None

    @property
    def in_sync(self) -> bool:
        return self.applied_revision == self.revision


@dataclass(frozen=True)
class AppVersion:
    name: str
    version: str
    tenant: str
    document: dict[str, Any]  # canonical spec document
    digest: str
    created: float


@dataclass
class Deployment:
    name: str
    tenant: str
    document: dict[str, Any]  # canonical deployment document
    created: float
    updated: float
    rollout: dict[str, Any] | None = None  # Rollout.to_json()


@dataclass(frozen=True)
class StatusResult:
    """What happened to a status batch: applied, or a duplicate of one already applied."""

    applied: bool
    last_seq: int


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def check_labels(labels: dict[str, str]) -> None:
    for key, value in labels.items():
        if not is_label_word(key) or not is_label_word(value):
            raise Invalid(f"label {key}={value}: keys and values use letters, digits and . _ / -")
        if key.startswith("system/"):
            raise Invalid(f"label {key!r}: system/ labels are set by Edgeward")


def copy_site(site: Site, **changes: Any) -> Site:
    values = {**site.__dict__, **changes}
    values["labels"] = dict(values["labels"])
    values["tenants"] = list(values["tenants"])
    values["ready"] = dict(values["ready"])
    values["failed"] = dict(values["failed"])
    return Site(**values)
