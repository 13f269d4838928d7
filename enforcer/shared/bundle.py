"""The enrollment bundle: what `edge-control site token` prints and `edge-enforcer enroll` reads.

One line: base64url (unpadded) of JSON ``{url, ca_fingerprint, secret, site}``. Control makes
bundles (`encode_bundle`); the enforcer reads them (`parse_bundle`) and enrolls with
`enforcer.link.enrollment`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "Bundle",
    "BundleError",
    "decode_document",
    "encode_bundle",
    "encode_document",
    "parse_bundle",
]

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_SITE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


class BundleError(ValueError):
    """The text is not a usable enrollment bundle; the message says why in one line."""


@dataclass(frozen=True)
class Bundle:
    url: str  # control's https URL
    ca_fingerprint: str  # sha256 of control's CA certificate (DER), hex
    secret: str
    site: str


def encode_bundle(bundle: Bundle) -> str:
    doc = {
        "url": bundle.url,
        "ca_fingerprint": bundle.ca_fingerprint,
        "secret": bundle.secret,
        "site": bundle.site,
    }
    return encode_document(doc)


def encode_document(doc: Mapping[str, Any]) -> str:
    """A JSON object as one line: base64url (unpadded) of its compact JSON. Every bundle
    (enrollment, a multi-host site's join bundle) is one."""
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_document(text: str, what: str, printed_by: str) -> dict[str, Any]:
    """The JSON object `encode_document` made (surrounding white space is ignored); BundleError
    naming `what` ("the enrollment bundle") and the command that prints it when it is empty or
    garbled."""
    text = text.strip()
    if not text:
        raise BundleError(f"{what} is empty")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError) as e:
        raise BundleError(
            f"{what} is garbled: it is not the one line that `{printed_by}` printed"
        ) from e
    if not isinstance(doc, dict):
        raise BundleError(f"{what} is garbled: not a JSON object")
    return doc


def parse_bundle(text: str) -> Bundle:
    """The bundle in `text` (surrounding white space is ignored); raises BundleError."""
    doc = decode_document(text, "the enrollment bundle", "edge-control site token")
    missing = [
        k
        for k in ("url", "ca_fingerprint", "secret", "site")
        if not isinstance(doc.get(k), str) or not doc[k]
    ]
    if missing:
        raise BundleError(f"the enrollment bundle lacks {', '.join(missing)}")
    parts = urlsplit(doc["url"])
    if parts.scheme != "https" or not parts.hostname:
        raise BundleError(f"the enrollment bundle's url {doc['url']!r} is not https://")
    fingerprint = doc["ca_fingerprint"].lower().replace(":", "")
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise BundleError("the enrollment bundle's ca_fingerprint is not a SHA-256 in hex")
    if not _SITE.fullmatch(doc["site"]):
        raise BundleError(f"the enrollment bundle's site {doc['site']!r} is not a site name")
    return Bundle(doc["url"].rstrip("/"), fingerprint, doc["secret"], doc["site"])
