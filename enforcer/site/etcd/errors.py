"""What can go wrong talking to etcd, one type per thing the caller does about it.

Every error names the endpoint it came from, so a message read in a log says which member of
the site store failed. The caller's choices:

- `Unreachable`: no member accepted a connection (down, wrong address, firewall): try later.
- `Unavailable`: a member answered but could not serve the request in time: no quorum, a
  leader election, or a stopped member. The request may or may not have been applied.
- `AuthFailed`: TLS or etcd authentication refused us: a configuration error, retrying is futile.
- `Compacted`: the revision asked for is gone: re-list, then watch from the listed revision.
- `LeaseExpired`: the lease is gone: grant a new one and register again.
- `RequestFailed`: etcd refused the request itself (a bug or a bad argument).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "AuthFailed",
    "Compacted",
    "EtcdError",
    "LeaseExpired",
    "RequestFailed",
    "Unavailable",
    "Unreachable",
    "error_from_body",
    "parse_answer",
]

# gRPC status codes the gateway reports (google.golang.org/grpc/codes).
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
PERMISSION_DENIED = 7
OUT_OF_RANGE = 11
UNAVAILABLE = 14
UNAUTHENTICATED = 16

_NO_QUORUM_MARKS = ("no leader", "timed out", "leader changed", "not capable", "stopped")


class EtcdError(Exception):
    """A failed etcd request; `endpoint` is the member's client URL ("" when not one)."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(f"etcd at {endpoint}: {message}" if endpoint else f"etcd: {message}")
        self.endpoint = endpoint
        self.detail = message


class Unreachable(EtcdError):
    """No connection could be made (or an open one broke)."""


class Unavailable(EtcdError):
    """Connected, but the cluster could not answer: no quorum, an election, or a timeout."""


class AuthFailed(EtcdError):
    """TLS (certificate) or etcd authentication refused the client."""


class RequestFailed(EtcdError):
    """etcd refused the request; `code` is the gRPC status code (0 when none was given)."""

    def __init__(self, endpoint: str, message: str, code: int = 0, reason: str = "") -> None:
        super().__init__(endpoint, message)
        self.code = code
        self.reason = reason or message


class Compacted(EtcdError):
    """The requested revision was compacted away.

    `compact_revision` is the oldest revision still kept, when etcd said (a watch does, a
    range at an old revision does not). Re-list, then watch from the listed revision + 1.
    """

    def __init__(self, endpoint: str, compact_revision: int | None, asked: int) -> None:
        where = f" (oldest kept: {compact_revision})" if compact_revision is not None else ""
        super().__init__(endpoint, f"revision {asked} has been compacted{where}; re-list")
        self.compact_revision = compact_revision
        self.asked = asked


class LeaseExpired(EtcdError):
    """The lease does not exist (any more): it expired or was revoked."""

    def __init__(self, endpoint: str, lease_id: int) -> None:
        super().__init__(endpoint, f"lease {lease_id:x} has expired or was revoked")
        self.lease_id = lease_id


def error_from_body(endpoint: str, body: dict[str, Any], status: int) -> EtcdError:
    """The error an error body stands for.

    The gateway spells errors two ways: unary calls answer `{"error": "...", "message": "...",
    "code": N}` with an HTTP error status; streams (watch, keep-alive) answer HTTP 200 and then
    `{"error": {"grpc_code": N, "http_code": ..., "message": "..."}}`.
    """
    raw = body.get("error")
    if isinstance(raw, dict):
        code = int(raw.get("grpc_code", raw.get("code", 0)) or 0)
        message = str(raw.get("message") or raw)
    else:
        code = int(body.get("code", 0) or 0)
        message = str(body.get("message") or raw or f"HTTP {status}")
    lowered = message.lower()
    if code in (UNAUTHENTICATED, PERMISSION_DENIED) or "auth" in lowered or "user name" in lowered:
        return AuthFailed(endpoint, f"refused: {message}")
    if code in (UNAVAILABLE, DEADLINE_EXCEEDED) or any(m in lowered for m in _NO_QUORUM_MARKS):
        return Unavailable(endpoint, f"cannot serve the request (no quorum?): {message}")
    if code == OUT_OF_RANGE and "compacted" in lowered:
        return Compacted(endpoint, None, 0)
    return RequestFailed(
        endpoint, f"refused the request: {message} (code {code})", code, reason=message
    )


def parse_answer(endpoint: str, raw: bytes, status: int, *, stream: bool) -> dict[str, Any]:
    """A gateway answer's body, or the typed error it carries (even with status 200)."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise RequestFailed(
            endpoint, f"answered HTTP {status} with a body that is not JSON: {raw[:200]!r}"
        ) from None
    if not isinstance(body, dict):
        raise RequestFailed(endpoint, f"answered HTTP {status} with {type(body).__name__} JSON")
    if "error" in body:
        raise error_from_body(endpoint, body, status)
    if status != 200:
        raise RequestFailed(endpoint, f"answered HTTP {status}: {raw[:200]!r}")
    if stream:
        result = body.get("result")
        if not isinstance(result, dict):
            raise RequestFailed(endpoint, f"sent a stream message without a result: {body}")
        return result
    return body
