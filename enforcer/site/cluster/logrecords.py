"""Control's log requests relayed through the site store, and their replies (pure).

Control reaches the host that leads the site only. For an instance another host runs, the
leader puts the request under that host's prefix and waits for the reply
(`enforcer.site.cluster.logrelay`):

/site/logs/requests/<host>/<id>   the request as control sent it (JSON)
/site/logs/replies/<id>           {"lines": [...], "error": null | message} (JSON)

Both keys hang on one lease, the leader's, granted for the request: the leader revokes it once
it has the reply (or gave up), and a leader that dies leaves nothing behind for longer than
`LEASE_TTL`. A reply is at most `REPLY_RECORD_BYTES`, well below etcd's default request limit
(1.5 MiB): the oldest lines go first when the lines of a reply (`REPLY_BYTES` of text, each
line cut at `REPLY_LINE_BYTES`) take more once written as JSON.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from enforcer.site.cluster.records import LOGS

__all__ = [
    "ANSWER_WAIT",
    "LEASE_TTL",
    "REPLIES",
    "REPLY_RECORD_BYTES",
    "REQUESTS",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "new_request_id",
    "reply_key",
    "request_id",
    "request_key",
    "requests_of",
]

REQUESTS = LOGS + "requests/"
REPLIES = LOGS + "replies/"
LEASE_TTL = 30.0  # seconds a request and its reply outlive a leader that stopped waiting
ANSWER_WAIT = 15.0  # seconds the leader waits for the reply (control waits 20 s)
REPLY_RECORD_BYTES = 1280 * 1024  # a reply record at most: etcd takes 1.5 MiB a request

_ID_LENGTH = 32  # uuid4 hex


def new_request_id() -> str:
    return uuid.uuid4().hex


def requests_of(host: str) -> str:
    """The prefix under which `host` finds the requests it answers."""
    return f"{REQUESTS}{host}/"


def request_key(host: str, request: str) -> str:
    return f"{requests_of(host)}{request}"


def reply_key(request: str) -> str:
    return f"{REPLIES}{request}"


def request_id(key: str, host: str) -> str | None:
    """The request's id in a key under `requests_of(host)`; None for a key that is none."""
    prefix = requests_of(host)
    rest = key[len(prefix) :] if key.startswith(prefix) else ""
    if len(rest) != _ID_LENGTH or not all(c in "0123456789abcdef" for c in rest):
        return None
    return rest


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def encode_request(request: dict[str, Any]) -> bytes:
    return _dump(request)


def decode_request(data: bytes) -> Any:
    """The request as the leader put it; ValueError when it is not JSON."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the relayed request is not JSON: {exc}") from None


def encode_reply(reply: dict[str, Any], limit: int = REPLY_RECORD_BYTES) -> bytes:
    """The reply as a record of at most `limit` bytes: its newest lines that fit."""
    lines = list(reply.get("lines") or [])
    error = reply.get("error")
    body = _dump({"lines": lines, "error": error})
    if len(body) <= limit:
        return body
    room = limit - len(_dump({"lines": [], "error": error}))
    kept = 0
    for line in reversed(lines):
        cost = len(_dump(line)) + 1  # and its comma
        if cost > room:
            break
        room -= cost
        kept += 1
    return _dump({"lines": lines[len(lines) - kept :] if kept else [], "error": error})


def decode_reply(data: bytes, host: str) -> dict[str, Any]:
    """The reply another host put; one that is not a reply says so, naming the host."""
    try:
        doc = json.loads(data)
        lines, error = doc["lines"], doc["error"]
        if not isinstance(lines, list) or not (error is None or isinstance(error, str)):
            raise TypeError("lines must be a list and error text or null")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        return {"lines": [], "error": f"host {host} answered with no log reply ({exc})"}
    return {"lines": lines, "error": error}
