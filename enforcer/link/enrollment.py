"""Enrolling a site with control, and the site identity it leaves in the state directory.

An enrollment bundle is one line: base64url (unpadded) of JSON ``{url, ca_fingerprint, secret,
site}``. `enroll` fetches control's CA, checks it against the bundle's fingerprint and pins it,
makes an EC P-256 key, sends a CSR with the secret over TLS verified against that CA, and writes
``site/key.pem`` (0600), ``site/cert.pem``, ``site/ca.pem`` and ``site/site.json``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from enforcer.shared import pki

__all__ = [
    "Bundle",
    "EnrollmentError",
    "SiteIdentity",
    "encode_bundle",
    "enroll",
    "load_site_identity",
    "parse_bundle",
    "site_dir",
]

log = logging.getLogger(__name__)

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_SITE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
ENROLL_TIMEOUT = 30.0


class EnrollmentError(Exception):
    """Enrollment failed; the message says why in one line."""


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
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def parse_bundle(text: str) -> Bundle:
    """The bundle in `text` (surrounding white space is ignored); raises EnrollmentError."""
    text = text.strip()
    if not text:
        raise EnrollmentError("the enrollment bundle is empty")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError) as e:
        raise EnrollmentError(
            "the enrollment bundle is garbled: it is not the one line that "
            "`edge-control site token` printed"
        ) from e
    if not isinstance(doc, dict):
        raise EnrollmentError("the enrollment bundle is garbled: not a JSON object")
    missing = [
        k
        for k in ("url", "ca_fingerprint", "secret", "site")
        if not isinstance(doc.get(k), str) or not doc[k]
    ]
    if missing:
        raise EnrollmentError(f"the enrollment bundle lacks {', '.join(missing)}")
    parts = urlsplit(doc["url"])
    if parts.scheme != "https" or not parts.hostname:
        raise EnrollmentError(f"the enrollment bundle's url {doc['url']!r} is not https://")
    fingerprint = doc["ca_fingerprint"].lower().replace(":", "")
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise EnrollmentError("the enrollment bundle's ca_fingerprint is not a SHA-256 in hex")
    if not _SITE.fullmatch(doc["site"]):
        raise EnrollmentError(f"the enrollment bundle's site {doc['site']!r} is not a site name")
    return Bundle(doc["url"].rstrip("/"), fingerprint, doc["secret"], doc["site"])


@dataclass(frozen=True)
class SiteIdentity:
    """An enrolled site: its name, control's URL, and where its key and certificates are."""

    site: str
    url: str
    ca_fingerprint: str
    directory: Path
    enrolled: float = 0.0

    @property
    def key_path(self) -> Path:
        return self.directory / "key.pem"

    @property
    def cert_path(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    def ssl_context(self) -> ssl.SSLContext:
        """Mutual TLS towards control: trusts only the pinned CA, presents the site certificate."""
        return pki.client_ssl_context(self.ca_path.read_bytes(), self.cert_path, self.key_path)


def site_dir(state_dir: Path) -> Path:
    return state_dir / "site"


def load_site_identity(state_dir: Path) -> SiteIdentity | None:
    """The identity enrolled under `state_dir`, or None when the site never enrolled."""
    directory = site_dir(state_dir)
    try:
        doc = json.loads((directory / "site.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise EnrollmentError(f"{directory / 'site.json'} is unreadable: {e}") from e
    identity = SiteIdentity(
        site=doc["site"],
        url=doc["url"],
        ca_fingerprint=doc["ca_fingerprint"],
        directory=directory,
        enrolled=float(doc.get("enrolled", 0.0)),
    )
    for path in (identity.key_path, identity.cert_path, identity.ca_path):
        if not path.exists():
            raise EnrollmentError(f"{path} is missing: enroll the site again")
    return identity


def _http(url: str, context: ssl.SSLContext, body: bytes | None = None) -> bytes:
    """One HTTPS request (blocking; run in a thread); raises EnrollmentError on refusal."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(
        url, data=body, headers=headers, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=ENROLL_TIMEOUT, context=context) as r:
            data: bytes = r.read()
            return data
    except urllib.error.HTTPError as e:
        message = f"HTTP {e.code}"
        with contextlib.suppress(ValueError, KeyError, TypeError):
            message = str(json.loads(e.read())["error"]["message"])
        raise EnrollmentError(f"control refused the enrollment: {message}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise EnrollmentError(f"cannot reach control at {url}: {reason}") from None


async def enroll(bundle: str, state_dir: Path) -> SiteIdentity:
    """Enroll with the control named in `bundle`; writes the identity under `state_dir/site`."""
    parsed = parse_bundle(bundle)
    # The CA is fetched without verification and then checked against the pinned
    # fingerprint; the secret only travels over TLS verified against that CA.
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    ca_pem = await asyncio.to_thread(_http, f"{parsed.url}/v1/enrollment/ca", unverified)
    try:
        fingerprint = pki.cert_fingerprint(ca_pem)
    except ValueError as e:
        raise EnrollmentError(f"{parsed.url} did not answer with a CA certificate") from e
    if fingerprint != parsed.ca_fingerprint:
        raise EnrollmentError(
            f"control's CA fingerprint {fingerprint} does not match the bundle's "
            f"{parsed.ca_fingerprint}: refusing to enroll (wrong control, or someone in "
            "between)"
        )
    key = pki.generate_key()
    csr = pki.make_csr(key, parsed.site)
    request = {"site": parsed.site, "secret": parsed.secret, "csr": csr.decode("ascii")}
    raw = await asyncio.to_thread(
        _http,
        f"{parsed.url}/v1/enrollment",
        pki.client_ssl_context(ca_pem),
        json.dumps(request).encode(),
    )
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("certificate"), str):
        raise EnrollmentError("control's enrollment answer has no certificate")
    cert_pem = answer["certificate"].encode("ascii")
    directory = site_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = time.time()
    pki.write_file(directory / "key.pem", pki.key_to_pem(key), 0o600)
    pki.write_file(directory / "cert.pem", cert_pem)
    pki.write_file(directory / "ca.pem", ca_pem)
    # A new identity starts a new status sequence at control: drop the old sync state.
    for name in ("sync.db", "sync.db-wal", "sync.db-shm"):
        (directory / name).unlink(missing_ok=True)
    doc = {
        "site": parsed.site,
        "url": parsed.url,
        "ca_fingerprint": parsed.ca_fingerprint,
        "enrolled": now,
    }
    pki.write_file(directory / "site.json", json.dumps(doc, indent=2).encode() + b"\n")
    log.info("enrolled as site %s with control %s", parsed.site, parsed.url)
    return SiteIdentity(parsed.site, parsed.url, parsed.ca_fingerprint, directory, now)
