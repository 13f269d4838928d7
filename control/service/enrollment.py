"""Joining sites: one-time enrollment bundles, and signing a site's certificate request.

A request to enroll is refused before anything else happens unless it carries a valid, unused,
unexpired secret of the site it names; an unknown site and a wrong secret get the same answer,
so site names cannot be probed. The secret is used up only when a certificate is issued.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from control.fleet.access import Principal, token_hash
from control.model import BadRequest, Forbidden, Invalid, Site, check_labels, check_name, copy_site
from control.pki import Authority, CSRError
from control.service.core import Core
from control.store.base import UNKNOWN_SECRET
from enforcer.shared.bundle import Bundle, encode_bundle

log = logging.getLogger(__name__)


class Enrollment:
    def __init__(self, core: Core, authority: Authority, url: str) -> None:
        self.core = core
        self.authority = authority
        self.url = url

    async def issue(
        self, who: Principal, name: str, labels: dict[str, str] | None, ttl: float
    ) -> tuple[str, float]:
        """A one-time bundle for site `name` (created, or relabelled when `labels` are given)."""
        who.require_admin("issue enrollment bundles")
        check_name(name, "site")
        check_labels(labels or {})
        if ttl <= 0:
            raise Invalid("the bundle's time to live must be positive")
        secret = secrets.token_urlsafe(24)
        core = self.core
        async with core.lock:
            now = core.clock()
            existing = core.fleet.sites.get(name)
            if existing is None:
                site = Site(name=name, labels=dict(labels or {}), created=now)
            else:
                site = copy_site(
                    existing, labels=dict(labels if labels is not None else existing.labels)
                )
            expires = now + ttl
            await core.store.sites.create_enrollment(token_hash(secret), site, expires, now)
            core.fleet.sites[name] = site
            await core.recompute([name])
        bundle = Bundle(self.url, self.authority.fingerprint, secret, name)
        return encode_bundle(bundle), expires

    async def enroll(self, site: str, secret: str, csr_pem: str) -> bytes:
        """The site's certificate (PEM) for `csr_pem`, once the secret is checked."""
        core = self.core
        secret_hash = token_hash(secret)
        # the same lookup, and the same answer, for an unknown site and a wrong secret
        await core.store.sites.check_enrollment(secret_hash, site, core.clock())
        if site not in core.fleet.sites:  # issued through another control process just now
            async with core.lock:
                await core.reload_sites([site])
                await core.recompute([site] if site in core.fleet.sites else [])
        if site not in core.fleet.sites:
            raise Forbidden(UNKNOWN_SECRET)
        try:
            cert_pem, serial = await asyncio.to_thread(
                self.authority.sign_site, csr_pem.encode(), site
            )
        except CSRError as e:
            raise BadRequest(f"csr: {e}") from e
        public_key = (
            x509.load_pem_x509_certificate(cert_pem)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        async with core.lock:
            now = core.clock()
            # checks the secret again, in the same transaction that uses it up
            await core.store.sites.consume_enrollment(secret_hash, site, serial, now, public_key)
            record = core.fleet.sites[site]
            record.cert_serial, record.enrolled, record.revoked = serial, now, False
            record.public_key = public_key
            record.last_seq = 0
            await core.recompute([site])
        core.metrics.inc("enrollments_total")
        log.info("site %s enrolled (certificate serial %s)", site, serial)
        return cert_pem
