"""The site's own CA and the certificates of its etcd members and clients.

A multi-host site secures its store with a CA of its own (not control's): every etcd member
holds a certificate for its advertised address, used for both peer and client traffic, and
every enforcer talks to the store with a client certificate from the same CA. Keys are EC P-256,
as everywhere else (`enforcer.shared.pki`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from enforcer.shared.lazy import lazy
from enforcer.shared.pki import (
    cert_fingerprint,
    cert_to_pem,
    client_ssl_context,
    create_ca,
    generate_key,
    issue_leaf,
    key_to_pem,
    load_cert,
    load_key,
    write_file,
    write_key_and_cert,
)

if TYPE_CHECKING:  # imported on first use (`enforcer.shared.lazy`)
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from enforcer.shared.pki import PrivateKey
else:
    x509 = lazy("cryptography.x509")
    ec = lazy("cryptography.hazmat.primitives.asymmetric.ec")
    ExtendedKeyUsageOID = lazy("cryptography.x509.oid", "ExtendedKeyUsageOID")
    NameOID = lazy("cryptography.x509.oid", "NameOID")

__all__ = [
    "SiteCA",
    "TLSFiles",
    "create_site_ca",
    "load_or_create_site_ca",
    "load_site_ca",
    "save_site_ca",
    "write_cert_pair",
]

CA_DAYS = 3650
LEAF_DAYS = 3650


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Edgeward site"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class TLSFiles:
    """Where one party's TLS material lies: the site CA, its certificate and its key."""

    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only the site CA and presenting this certificate."""
        return client_ssl_context(self.ca.read_bytes(), self.cert, self.key)


@dataclass(frozen=True)
class SiteCA:
    """The site's CA certificate and key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return cert_to_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_to_pem(self.key)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the CA certificate (what a join bundle pins)."""
        return cert_fingerprint(self.cert)

    def issue(self, common_name: str, addresses: list[str] | None = None) -> tuple[bytes, bytes]:
        """A certificate and key (PEM) for `common_name`.

        With `addresses` (IP addresses or DNS names) the certificate serves TLS for them and is
        also a client certificate: what an etcd member needs for its peer and client ports.
        Without, it is a client certificate only.
        """
        key = generate_key()
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if addresses:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        cert = issue_leaf(
            self.cert,
            self.key,
            _name(common_name),
            key.public_key(),
            LEAF_DAYS,
            usages=usages,
            hosts=sorted(set(addresses)) if addresses else None,
            key_usage=True,
            key_encipherment=True,
        )
        return cert_to_pem(cert), key_to_pem(key)

    def sign_csr(self, csr_pem: bytes, common_name: str, addresses: list[str] | None) -> bytes:
        """A certificate (PEM) for the key of a signing request, as `issue` makes one (the
        request's own subject is not used: the CA names the host). ValueError when the
        request is not a valid, self-signed EC request."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise ValueError(f"not a certificate signing request: {exc}") from None
        public_key = csr.public_key()
        if not csr.is_signature_valid or not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ValueError("the certificate signing request is not signed by an EC key")
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if addresses:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        cert = issue_leaf(
            self.cert,
            self.key,
            _name(common_name),
            public_key,
            LEAF_DAYS,
            usages=usages,
            hosts=sorted(set(addresses)) if addresses else None,
            key_usage=True,
            key_encipherment=True,
        )
        return cert_to_pem(cert)

    def write_pair(
        self, directory: Path, stem: str, common_name: str, addresses: list[str] | None = None
    ) -> TLSFiles:
        """Issue a certificate (see `issue`) into `directory` as STEM.pem and STEM-key.pem
        (0600), beside a copy of the CA as ca.pem."""
        cert_pem, key_pem = self.issue(common_name, addresses)
        return write_cert_pair(directory, stem, self.cert_pem, cert_pem, key_pem)


def write_cert_pair(
    directory: Path, stem: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes
) -> TLSFiles:
    """Write a CA copy, a certificate and its key (0600) into `directory`."""
    files = TLSFiles(directory / "ca.pem", directory / f"{stem}.pem", directory / f"{stem}-key.pem")
    write_file(files.ca, ca_pem)
    write_file(files.key, key_pem, 0o600)
    write_file(files.cert, cert_pem)
    return files


def create_site_ca(site: str) -> SiteCA:
    """A new CA for `site`."""
    cert, key = create_ca(_name(f"Edgeward site CA {site}"), CA_DAYS)
    return SiteCA(cert, key)


def load_site_ca(directory: Path) -> SiteCA | None:
    """The site CA kept in `directory`, or None where this host holds none (a worker)."""
    cert_path, key_path = directory / "site-ca.pem", directory / "site-ca-key.pem"
    if cert_path.exists() and key_path.exists():
        return SiteCA(load_cert(cert_path.read_bytes()), load_key(key_path.read_bytes()))
    return None


def save_site_ca(directory: Path, cert_pem: bytes, key_pem: bytes) -> SiteCA:
    """Keep a site CA received from another controller in `directory` (the key 0600)."""
    ca = SiteCA(load_cert(cert_pem), load_key(key_pem))
    write_key_and_cert(directory / "site-ca-key.pem", ca.key, directory / "site-ca.pem", ca.cert)
    return ca


def load_or_create_site_ca(directory: Path, site: str) -> SiteCA:
    """The site CA kept in `directory` (site-ca.pem, site-ca-key.pem 0600), made on first use."""
    cert_path, key_path = directory / "site-ca.pem", directory / "site-ca-key.pem"
    if cert_path.exists() and key_path.exists():
        return SiteCA(load_cert(cert_path.read_bytes()), load_key(key_path.read_bytes()))
    ca = create_site_ca(site)
    write_key_and_cert(key_path, ca.key, cert_path, ca.cert)
    return ca
