"""The site store's interface: keys with revisions, watch, leases and compare-and-swap.

Two engines implement it — SQLite for a one-host site (`enforcer.site.kv.sqlite`), etcd for a
multi-host one — so what runs on top (membership, election, scheduling) does not know which.
The model is etcd's v3 one:

- Every change gets the next value of one store-wide **revision** counter. A key keeps the
  revision that created it (`create_revision`) and the one that last changed it
  (`mod_revision`); deleting a key and putting it again creates it anew.
- A **lease** is granted with a TTL and kept alive by its holder; when it expires (or is
  revoked) every key attached to it is deleted, in one revision.
- **Compare-and-swap**: `create` writes only a key that is absent, `replace` only a key whose
  mod_revision is the one the caller read. Both answer None when the comparison fails.
- **Watch** yields the changes under a prefix from a revision on, in revision order. Old
  changes are compacted away: watching from a revision that is gone raises `Compacted`, and the
  caller re-lists (`range`) and watches again from the listed revision + 1.

Keys are non-empty text; values are bytes. This module is pure: data types and the Protocol.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Compacted",
    "Entry",
    "Event",
    "EventKind",
    "Health",
    "InvalidRequest",
    "KVError",
    "Lease",
    "LeaseNotFound",
    "SiteKV",
    "Unavailable",
    "check_key",
    "check_ttl",
]


class KVError(Exception):
    """A site store operation failed; str() says which and why."""


class Unavailable(KVError):
    """The store cannot be reached or cannot answer now (no quorum, closed, disk error)."""


class InvalidRequest(KVError):
    """The request itself is wrong (an empty key, a TTL that is not positive)."""


class LeaseNotFound(KVError):
    """The lease expired, was revoked, or never existed."""

    def __init__(self, lease: int) -> None:
        super().__init__(f"lease {lease:x} not found: it expired or was revoked")
        self.lease = lease


class Compacted(KVError):
    """The changes a watch asked for are gone; re-list with `range` and watch again."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted (the changes before revision "
            f"{compact_revision} are gone): re-list and watch again"
        )
        self.requested = requested
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class Entry:
    """A key as stored: its value, the revisions that created and last changed it, its lease."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int  # 1 when created, +1 on every put; back to 1 when deleted and put again
    lease: int | None = None


class EventKind(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True)
class Event:
    """One change seen by a watch. For a DELETE, `value` is empty and `lease` is None."""

    kind: EventKind
    key: str
    value: bytes
    revision: int  # the revision of this change (the key's new mod_revision for a PUT)
    create_revision: int = 0  # for a PUT: the revision that created the key
    lease: int | None = None


@dataclass(frozen=True)
class Lease:
    """A granted lease: its id and the TTL the store granted (it may round the asked one up)."""

    id: int
    ttl: float


@dataclass(frozen=True)
class Health:
    """What `health()` found: whether the store answers, its engine and current revision."""

    ok: bool
    engine: str  # "sqlite" | "etcd"
    revision: int
    detail: str = ""  # why it is not ok, or which endpoint/file answered


def check_key(key: str) -> str:
    """The key, or InvalidRequest naming what is wrong with it."""
    if not isinstance(key, str) or not key:
        raise InvalidRequest(f"a site store key must be non-empty text, not {key!r}")
    return key


def check_ttl(ttl: float) -> float:
    if not ttl > 0:
        raise InvalidRequest(f"a lease TTL must be a positive number of seconds, not {ttl!r}")
    return float(ttl)


@runtime_checkable
class SiteKV(Protocol):
    """The site store. Every method raises `Unavailable` when the store cannot answer."""

    async def get(self, key: str) -> Entry | None:
        """The key's entry, or None when it is absent."""
        ...

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        """Every key starting with `prefix` ("" for all), sorted by key, and the store's revision
        at that moment (watch from it + 1 to see every later change)."""
        ...

    async def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        """Write the key (attached to `lease`, or to none); the new revision.
        Raises LeaseNotFound for a lease that is gone."""
        ...

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete the key (or every key under the prefix); how many were deleted."""
        ...

    async def create(self, key: str, value: bytes, lease: int | None = None) -> int | None:
        """Write the key only if it is absent: the new revision, or None when it exists."""
        ...

    async def replace(
        self, key: str, value: bytes, expected_mod_revision: int, lease: int | None = None
    ) -> int | None:
        """Write the key only if its mod_revision is still `expected_mod_revision`: the new
        revision, or None when it changed or is gone."""
        ...

    async def grant(self, ttl: float) -> Lease:
        """A new lease that expires `ttl` seconds after its last keep-alive."""
        ...

    async def keep_alive(self, lease: int) -> float:
        """Renew the lease; its TTL. Raises LeaseNotFound when it is gone."""
        ...

    async def time_to_live(self, lease: int) -> float | None:
        """Seconds the lease has left, or None when it is gone."""
        ...

    async def revoke(self, lease: int) -> None:
        """End the lease now, deleting its keys. A lease that is already gone is no error."""
        ...

    def watch(self, prefix: str, from_revision: int) -> AsyncGenerator[Event, None]:
        """The changes under `prefix` from `from_revision` (inclusive) on, in revision order,
        without end. Raises Compacted (at the start or later) when those changes are gone."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget the changes before `revision`; watches from before it raise Compacted.
        Raises InvalidRequest for a revision the store has not reached."""
        ...

    async def health(self) -> Health:
        """Whether the store answers now; never raises."""
        ...

    async def close(self) -> None:
        """Stop background work and release the connection."""
        ...
