"""What etcd's JSON gateway sends and takes, as typed records, and the encoding between them.

The gateway's traps live here: keys and values travel base64-encoded; 64-bit numbers
(revisions, lease and member IDs) arrive as strings; fields at their zero value (a count of 0,
a PUT event's type, a failed transaction's `succeeded`) are left out altogether. The
transaction operations (`Compare`, `Put`, `Delete`, `Get`) encode themselves the same way.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Compare",
    "Delete",
    "EventKind",
    "Get",
    "KeyValue",
    "Lease",
    "Member",
    "Op",
    "Put",
    "Range",
    "Status",
    "TxnResult",
    "WatchEvent",
    "b64",
    "decode_key",
    "encode_key",
    "kv_from",
    "number",
    "prefix_end",
    "range_body",
]


def encode_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def decode_key(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def number(body: Mapping[str, Any], field: str) -> int:
    """An integer field that may be a string ("12") or absent (0)."""
    return int(body.get(field) or 0)


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with `prefix` (all keys for b"")."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\x00"
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd keeps it. `lease` is 0 when the key has no lease."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


def kv_from(body: Mapping[str, Any]) -> KeyValue:
    return KeyValue(
        key=decode_key(unb64(body.get("key", ""))),
        value=unb64(body.get("value", "")),
        create_revision=number(body, "create_revision"),
        mod_revision=number(body, "mod_revision"),
        version=number(body, "version"),
        lease=number(body, "lease"),
    )


@dataclass(frozen=True)
class Range:
    """The keys a range found, and the store's revision they were read at."""

    kvs: tuple[KeyValue, ...]
    revision: int
    more: bool = False


@dataclass(frozen=True)
class TxnResult:
    """A transaction's outcome: whether its compares held, the store's revision after it, and
    what its `Get` operations read, in order (for a failed compare-and-swap: the key as it is)."""

    succeeded: bool
    revision: int
    reads: tuple[tuple[KeyValue, ...], ...] = ()

    @property
    def current(self) -> KeyValue | None:
        """The first key the transaction read, if any."""
        return self.reads[0][0] if self.reads and self.reads[0] else None


@dataclass(frozen=True)
class Lease:
    id: int
    ttl: int


class EventKind(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True)
class WatchEvent:
    """A change to one key. For a DELETE, `kv` carries only the key and `mod_revision`."""

    kind: EventKind
    kv: KeyValue
    prev: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


def event_from(body: Mapping[str, Any]) -> WatchEvent:
    kind = EventKind.DELETE if body.get("type") == "DELETE" else EventKind.PUT
    prev = body.get("prev_kv")
    return WatchEvent(kind, kv_from(body.get("kv", {})), kv_from(prev) if prev else None)


@dataclass(frozen=True)
class Member:
    """A member of the etcd cluster; `name` is "" until a member added by `member add` starts."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False  # added as a learner: it does not count towards quorum yet

    @property
    def started(self) -> bool:
        return bool(self.name)


def member_from(body: Mapping[str, Any]) -> Member:
    return Member(
        id=number(body, "ID"),
        name=str(body.get("name", "")),
        peer_urls=tuple(body.get("peerURLs", ())),
        client_urls=tuple(body.get("clientURLs", ())),
        is_learner=bool(body.get("isLearner", False)),
    )


@dataclass(frozen=True)
class Status:
    """One member's view: its id, the leader it follows (0: none), the store's revision."""

    member_id: int
    leader: int
    revision: int
    raft_term: int
    version: str
    db_size: int


def status_from(body: Mapping[str, Any]) -> Status:
    header = body.get("header", {})
    return Status(
        member_id=number(header, "member_id"),
        leader=number(body, "leader"),
        revision=number(header, "revision"),
        raft_term=number(body, "raftTerm"),
        version=str(body.get("version", "")),
        db_size=number(body, "dbSize"),
    )


# ---------------------------------------------------------------- transaction operations


@dataclass(frozen=True)
class Compare:
    """A transaction's condition on one key's `create_revision` or `mod_revision`.

    `Compare(key, "create", 0)` holds when the key is absent; `Compare(key, "mod", n)` when it
    was last written at revision n.
    """

    key: str
    target: Literal["create", "mod"]
    revision: int

    def body(self) -> dict[str, Any]:
        field = "create_revision" if self.target == "create" else "mod_revision"
        target = "CREATE" if self.target == "create" else "MOD"
        return {
            "key": b64(encode_key(self.key)),
            "target": target,
            "result": "EQUAL",
            field: str(self.revision),
        }


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0

    def body(self) -> dict[str, Any]:
        put: dict[str, Any] = {"key": b64(encode_key(self.key)), "value": b64(self.value)}
        if self.lease:
            put["lease"] = str(self.lease)
        return {"request_put": put}


@dataclass(frozen=True)
class Delete:
    key: str
    prefix: bool = False

    def body(self) -> dict[str, Any]:
        return {"request_delete_range": range_body(self.key, self.prefix)}


@dataclass(frozen=True)
class Get:
    key: str
    prefix: bool = False

    def body(self) -> dict[str, Any]:
        return {"request_range": range_body(self.key, self.prefix)}


Op = Put | Delete | Get


def range_body(key: str, prefix: bool) -> dict[str, Any]:
    """The key (or prefix) of a range, delete or watch; the prefix "" is every key."""
    raw = encode_key(key)
    if prefix and not raw:
        return {"key": b64(b"\x00"), "range_end": b64(b"\x00")}  # etcd wants a key
    body: dict[str, Any] = {"key": b64(raw)}
    if prefix:
        body["range_end"] = b64(prefix_end(raw))
    return body
