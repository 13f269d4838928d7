"""Joining a multi-host site: the join bundle, the invitation kept in the site store, and the
checks a controller makes before it lets a host in (pure: no I/O).

A controller's `edge-enforcer site join-bundle` writes an `Invitation` under
``/site/joins/<sha256 of the secret>`` and prints a `JoinBundle`: one line, base64url of JSON
(the codec of `enforcer.shared.bundle`), with the site's name, the inviting controller's join
service URL, the store's client URLs, the site CA's fingerprint, the secret, the role and the
expiry. The joining host pins the CA by that fingerprint, then hands the secret and a
certificate signing request to the join service, which redeems the invitation with a
compare-and-swap (so a bundle works once) and signs the certificate.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from enforcer.shared.bundle import BundleError, decode_document, encode_document

__all__ = [
    "INVITATION_KEPT",
    "JOINS",
    "ROLES",
    "Invitation",
    "JoinBundle",
    "JoinError",
    "JoinRequest",
    "controller_count_warning",
    "encode_join_bundle",
    "invitation_key",
    "leave_refusal",
    "parse_join_bundle",
    "parse_join_request",
    "refusal",
    "stale_invitations",
]

JOINS = "/site/joins/"
ROLES = ("controller", "worker")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_WHAT = "the join bundle"
_PRINTED_BY = "edge-enforcer site join-bundle"


class JoinError(ValueError):
    """A join cannot go on; the message says why in one line."""


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class JoinBundle:
    site: str
    url: str  # the inviting controller's join service: https://10.0.0.11:7722
    endpoints: tuple[str, ...]  # the site store's client URLs
    ca_fingerprint: str  # SHA-256 of the site CA's certificate (DER), hex
    secret: str
    role: str
    expires: float  # unix time


def encode_join_bundle(bundle: JoinBundle) -> str:
    return encode_document(
        {
            "site": bundle.site,
            "url": bundle.url,
            "endpoints": list(bundle.endpoints),
            "ca_fingerprint": bundle.ca_fingerprint,
            "secret": bundle.secret,
            "role": bundle.role,
            "expires": int(bundle.expires),
        }
    )


def parse_join_bundle(text: str) -> JoinBundle:
    """The join bundle in `text`; JoinError saying what is wrong with it."""
    try:
        doc = decode_document(text, _WHAT, _PRINTED_BY)
    except BundleError as exc:
        raise JoinError(str(exc)) from None
    strings = ("site", "url", "ca_fingerprint", "secret", "role")
    missing = [k for k in strings if not isinstance(doc.get(k), str) or not doc[k]]
    endpoints = doc.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        missing.append("endpoints")
    if not isinstance(doc.get("expires"), int):
        missing.append("expires")
    if missing:
        raise JoinError(f"{_WHAT} is garbled: it lacks {', '.join(missing)}")
    assert isinstance(endpoints, list)
    for url in [doc["url"], *endpoints]:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname:
            raise JoinError(f"{_WHAT} is garbled: {url!r} is not an https:// URL")
    fingerprint = doc["ca_fingerprint"].lower().replace(":", "")
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise JoinError(f"{_WHAT} is garbled: its CA fingerprint is not a SHA-256 in hex")
    if doc["role"] not in ROLES:
        raise JoinError(f"{_WHAT} is garbled: role {doc['role']!r} is neither of {ROLES}")
    return JoinBundle(
        site=doc["site"],
        url=doc["url"].rstrip("/"),
        endpoints=tuple(endpoints),
        ca_fingerprint=fingerprint,
        secret=doc["secret"],
        role=doc["role"],
        expires=float(doc["expires"]),
    )


def invitation_key(secret: str) -> str:
    """Where the invitation for `secret` lies: the secret itself is not kept in the store."""
    return JOINS + hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Invitation:
    """What the store keeps of a join bundle: its role, its expiry, who made it and who used it."""

    role: str
    expires: float
    created_by: str
    used_by: str = ""

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "role": self.role,
                "expires": self.expires,
                "created-by": self.created_by,
                "used-by": self.used_by,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Invitation:
        try:
            raw = json.loads(data)
            return cls(
                str(raw["role"]), float(raw["expires"]), str(raw["created-by"]), str(raw["used-by"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise JoinError(f"the site's record of this join bundle is unreadable ({exc})") from exc

    def redeemed_by(self, host: str) -> Invitation:
        return replace(self, used_by=host)


def refusal(invitation: Invitation | None, role: str, now: float) -> str | None:
    """Why a join with this invitation is refused, or None when it may go on."""
    if invitation is None:
        return (
            "the join bundle's secret is not known to this site: the bundle is wrong, or from "
            "another site"
        )
    if invitation.used_by:
        return (
            f"this join bundle was used already (by host {invitation.used_by}): a bundle works "
            "once; print a new one with `edge-enforcer site join-bundle`"
        )
    if now >= invitation.expires:
        return (
            f"this join bundle expired at {_when(invitation.expires)}: print a new one with "
            "`edge-enforcer site join-bundle`"
        )
    if role != invitation.role:
        return f"the join bundle is for a {invitation.role}, not a {role}"
    return None


@dataclass(frozen=True)
class JoinRequest:
    """What a joining host sends the join service."""

    secret: str
    host: str
    address: str
    role: str
    csr: str  # PEM
    peer_port: int  # where the joining host can be reached (its member's peer port)


def parse_join_request(doc: Any) -> JoinRequest:
    if not isinstance(doc, dict):
        raise JoinError("the join request is not a JSON object")
    strings = ("secret", "host", "address", "role", "csr")
    missing = [k for k in strings if not isinstance(doc.get(k), str) or not doc[k]]
    port = doc.get("peer-port")
    if not isinstance(port, int) or not 0 < port < 65536:
        missing.append("peer-port")
    if missing:
        raise JoinError(f"the join request lacks {', '.join(missing)}")
    if not _HOST_ID.match(doc["host"]):
        raise JoinError(f"host id {doc['host']!r} is not 1-63 letters, digits, '.', '_' or '-'")
    if doc["role"] not in ROLES:
        raise JoinError(f"role {doc['role']!r} is neither of {ROLES}")
    assert isinstance(port, int)
    return JoinRequest(doc["secret"], doc["host"], doc["address"], doc["role"], doc["csr"], port)


def controller_count_warning(count: int) -> str | None:
    """A warning for a site store of `count` controllers that adds no fault tolerance."""
    if count in (1, 3, 5):
        return None
    if count % 2 == 0:
        return (
            f"the site has {count} controllers: an even count tolerates no more failures than "
            f"{count - 1} (quorum is {count // 2 + 1}); use 1, 3 or 5"
        )
    return f"the site has {count} controllers: use 1, 3 or 5 (more only slows every write)"


INVITATION_KEPT = 86400.0  # seconds an invitation is kept past its expiry (to say why)


def stale_invitations(invitations: Mapping[str, Invitation], now: float) -> list[str]:
    """The keys of invitations to delete: expired more than `INVITATION_KEPT` ago (used or
    not; until then a join with it is told it expired, or was used, by whom)."""
    return sorted(k for k, inv in invitations.items() if now >= inv.expires + INVITATION_KEPT)


def leave_refusal(
    host: str, role: str, members: Sequence[str], live: Collection[str]
) -> str | None:
    """Why `host` may not leave the site now, or None. `members`: the names of the store's
    voting members (host ids); `live`: the hosts registered now."""
    if role != "controller" or host not in members:
        return None  # a worker, or a host of a site on given etcd: no member of its own
    others = [m for m in members if m != host]
    if not others:
        return (
            f"host {host} is the site's last controller: the site's store would go with it "
            "(join another controller first)"
        )
    quorum = len(others) // 2 + 1
    answering = sum(1 for m in others if m in live)
    if answering < quorum:
        down = ", ".join(sorted(m for m in others if m not in live))
        return (
            f"removing host {host}'s member would put the site's store at risk: of the "
            f"{len(others)} that would remain, only {answering} answer ({down} down) and "
            f"quorum needs {quorum}; bring them back first"
        )
    return None
