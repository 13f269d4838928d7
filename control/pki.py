"""Control's certificate authority: its CA, its server certificate and site certificates.

On first start control creates an EC P-256 CA (``ca.pem``, ``ca-key.pem`` 0600) and a server
certificate for the names it is reached by; later starts reuse both, and reissue the server
certificate when it nears its end or when a name is missing. Site certificates carry the site
name as common name and only the client-auth purpose, so a site cannot pose as control.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from enforcer.shared.pki import (
    PrivateKey,
    cert_fingerprint,
    cert_not_after,
    cert_to_pem,
    create_ca,
    generate_key,
    issue_leaf,
    load_cert,
    load_key,
    write_key_and_cert,
)

log = logging.getLogger(__name__)

CA_DAYS = 3650
SERVER_DAYS = 825
SITE_DAYS = 3650
RENEW_BEFORE = datetime.timedelta(days=30)


class CSRError(ValueError):
    """A certificate signing request that control will not sign."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Edgeward"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass
class Authority:
    """The loaded CA of one control state directory."""

    cert: x509.Certificate
    key: PrivateKey
    state_dir: Path

    @property
    def ca_pem(self) -> bytes:
        return cert_to_pem(self.cert)

    @property
    def fingerprint(self) -> str:
        return cert_fingerprint(self.cert)

    @property
    def server_cert_path(self) -> Path:
        return self.state_dir / "server.pem"

    @property
    def server_key_path(self) -> Path:
        return self.state_dir / "server-key.pem"

    def sign_site(self, csr_pem: bytes, site: str) -> tuple[bytes, str]:
        """Sign a site's CSR; returns the PEM certificate and its serial as upper-case hex.

        The subject is set by control (the site name), whatever the request asked for.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as e:
            raise CSRError("the certificate request is not a PEM CSR") from e
        try:
            public_key = csr.public_key()
            valid = csr.is_signature_valid
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise CSRError(f"the certificate request's key cannot be used: {e}") from e
        if not valid:
            raise CSRError("the certificate request's signature does not verify")
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise CSRError("the certificate request's key must be an EC P-256 key")
        cert = issue_leaf(
            self.cert,
            self.key,
            _name(site),
            public_key,
            SITE_DAYS,
            usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
            key_usage=True,
        )
        return cert_to_pem(cert), serial_hex(cert.serial_number)

    def ensure_server_cert(self, hosts: list[str]) -> None:
        """Issue ``server.pem`` unless the present one covers `hosts` and is not near its end."""
        wanted = sorted(set(hosts))
        path = self.server_cert_path
        if path.exists() and self.server_key_path.exists():
            cert = load_cert(path.read_bytes())
            if cert_not_after(cert) - _now() > RENEW_BEFORE and set(wanted) <= _san_names(cert):
                return
            log.info("reissuing the server certificate for %s", ", ".join(wanted))
        key = generate_key()
        cert = issue_leaf(
            self.cert,
            self.key,
            _name("edgeward-control"),
            key.public_key(),
            SERVER_DAYS,
            usages=[ExtendedKeyUsageOID.SERVER_AUTH],
            hosts=wanted,
        )
        write_key_and_cert(self.server_key_path, key, path, cert)

    def server_ssl_context(self) -> ssl.SSLContext:
        """Server TLS: control's certificate; client certificates optional, checked against the CA.

        Operators come without a client certificate (they use bearer tokens); sites present
        theirs, and the sync endpoints refuse requests without one.
        """
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=self.ca_pem.decode())
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.server_cert_path), str(self.server_key_path))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


def serial_hex(serial: int) -> str:
    """A serial number as `ssl.SSLSocket.getpeercert()` spells it: upper-case hex, even length."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def _san_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names: set[str] = set(san.get_values_for_type(x509.DNSName))
    names.update(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return names


def load_or_create_authority(state_dir: Path) -> Authority:
    """The CA of `state_dir`, created on first use."""
    cert_path, key_path = state_dir / "ca.pem", state_dir / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        return Authority(
            load_cert(cert_path.read_bytes()), load_key(key_path.read_bytes()), state_dir
        )
    cert, key = create_ca(_name(f"Edgeward control CA {socket.gethostname()}"), CA_DAYS)
    write_key_and_cert(key_path, key, cert_path, cert)
    log.info("created the control CA in %s", state_dir)
    return Authority(cert, key, state_dir)


def server_hosts(listen_host: str, public_host: str | None) -> list[str]:
    """The names the server certificate must cover."""
    hosts = {"localhost", "127.0.0.1", "::1", socket.gethostname()}
    for host in (listen_host, public_host):
        if host and host not in ("0.0.0.0", "::", ""):
            hosts.add(host)
    with contextlib.suppress(OSError):
        hosts.add(socket.getfqdn())
    return sorted(hosts)
