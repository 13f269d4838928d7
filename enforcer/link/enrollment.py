"""Enrolling a site with control, and the site identity it leaves in the state directory.

The bundle is `enforcer.shared.bundle` (control makes it). `enroll` fetches control's CA over
aiohttp, checks it against the bundle's fingerprint and pins it, makes an EC P-256 key, sends
a CSR with the secret over TLS verified against that CA, and writes ``site/key.pem`` (0600),
``site/cert.pem``, ``site/ca.pem`` and ``site/site.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from enforcer.shared import pki
from enforcer.shared.bundle import BundleError, parse_bundle

__all__ = [
    "EnrollmentError",
    "SiteIdentity",
    "enroll",
    "identity_fields",
    "load_site_identity",
    "site_dir",
    "write_site_identity",
]

log = logging.getLogger(__name__)

ENROLL_TIMEOUT = 30.0


class EnrollmentError(Exception):
    """Enrollment failed; the message says why in one line."""


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


async def _request(url: str, context: ssl.SSLContext | bool, body: bytes | None = None) -> bytes:
    """One HTTPS request in a session of its own (no connection is shared between an unverified
    and a verified request); raises EnrollmentError on refusal, one line."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    method = "POST" if body is not None else "GET"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ENROLL_TIMEOUT)) as session,
            session.request(method, url, data=body, headers=headers, ssl=context) as response,
        ):
            data = await response.read()
            status = response.status
    except aiohttp.ClientConnectorCertificateError as e:
        problem = e.certificate_error
        reason = getattr(problem, "verify_message", None) or str(problem)
        raise EnrollmentError(f"cannot verify control at {url}: {reason}") from None
    except aiohttp.ClientConnectorError as e:
        errno = e.os_error.errno
        reason = (os.strerror(errno) if errno else str(e.os_error)).lower()
        raise EnrollmentError(f"cannot reach control at {url}: {reason}") from None
    except TimeoutError:
        raise EnrollmentError(
            f"control at {url} did not answer within {ENROLL_TIMEOUT:g}s"
        ) from None
    except aiohttp.ClientError as e:
        raise EnrollmentError(f"cannot reach control at {url}: {e or type(e).__name__}") from None
    if status >= 400:
        message = f"HTTP {status}"
        with contextlib.suppress(ValueError, KeyError, TypeError):
            message = str(json.loads(data)["error"]["message"])
        raise EnrollmentError(f"control refused the enrollment: {message}")
    return data


async def enroll(bundle: str, state_dir: Path) -> SiteIdentity:
    """Enroll with the control named in `bundle`; writes the identity under `state_dir/site`."""
    try:
        parsed = parse_bundle(bundle)
    except BundleError as e:
        raise EnrollmentError(str(e)) from None
    # The CA is fetched without verification and then checked against the pinned
    # fingerprint; the secret only travels over TLS verified against that CA.
    ca_pem = await _request(f"{parsed.url}/v1/enrollment/ca", False)
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
    raw = await _request(
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
    fields = {
        "site": parsed.site,
        "url": parsed.url,
        "ca_fingerprint": parsed.ca_fingerprint,
        "enrolled": repr(time.time()),
        "key": pki.key_to_pem(key).decode("ascii"),
        "cert": cert_pem.decode("ascii"),
        "ca": ca_pem.decode("ascii"),
    }
    identity = write_site_identity(state_dir, fields)
    log.info("enrolled as site %s with control %s", parsed.site, parsed.url)
    return identity


def write_site_identity(state_dir: Path, fields: Mapping[str, str]) -> SiteIdentity:
    """Write an identity (`identity_fields`' form) under `state_dir/site`. One that differs
    from the identity there starts a new status sequence at control: the old sync state goes."""
    directory = site_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    try:
        old = load_site_identity(state_dir)
    except EnrollmentError:  # a half-written one: replaced
        old = None
    if old is None or identity_fields(old) != dict(fields):
        for name in ("sync.db", "sync.db-wal", "sync.db-shm"):
            (directory / name).unlink(missing_ok=True)
    pki.write_file(directory / "key.pem", fields["key"].encode("ascii"), 0o600)
    pki.write_file(directory / "cert.pem", fields["cert"].encode("ascii"))
    pki.write_file(directory / "ca.pem", fields["ca"].encode("ascii"))
    enrolled = float(fields["enrolled"])
    doc = {
        "site": fields["site"],
        "url": fields["url"],
        "ca_fingerprint": fields["ca_fingerprint"],
        "enrolled": enrolled,
    }
    pki.write_file(directory / "site.json", json.dumps(doc, indent=2).encode() + b"\n")
    return SiteIdentity(
        fields["site"], fields["url"], fields["ca_fingerprint"], directory, enrolled
    )


def identity_fields(identity: SiteIdentity) -> dict[str, str]:
    """An identity as text fields: what a multi-host site keeps (sealed) in its store."""
    return {
        "site": identity.site,
        "url": identity.url,
        "ca_fingerprint": identity.ca_fingerprint,
        "enrolled": repr(identity.enrolled),
        "key": identity.key_path.read_text(),
        "cert": identity.cert_path.read_text(),
        "ca": identity.ca_path.read_text(),
    }
