"""TLS for the local API's TCP listener, so that bearer tokens never cross a network in clear.

The listener serves TLS with ``[api] tls-cert`` / ``tls-key`` when both are given; otherwise,
unless it listens on loopback only, with a self-signed certificate of the host made at first
start in ``<state-dir>/api-tls/`` (``cert.pem``, ``key.pem`` 0600; its SHA-256 fingerprint is
logged so that clients can pin it). Plain HTTP is served only on a loopback address.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from pathlib import Path

__all__ = ["TLS_DIR", "is_loopback", "self_signed_certificate", "server_context"]

log = logging.getLogger(__name__)

TLS_DIR = "api-tls"
VALID_DAYS = 3650


def is_loopback(host: str) -> bool:
    """Whether `host` (as in ``listen``) is a loopback address; "" (every interface) is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def self_signed_certificate(state_dir: Path, host_id: str) -> tuple[Path, Path]:
    """The host's certificate and key for the API, made the first time: (cert, key)."""
    directory = state_dir / TLS_DIR
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from enforcer.shared import pki

    hostname = socket.gethostname()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_id or hostname)])
    cert, key = pki.self_signed(subject, [hostname, "localhost", "127.0.0.1", "::1"], VALID_DAYS)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    pki.write_key_and_cert(key_path, key, cert_path, cert)
    log.info(
        "made a self-signed certificate for the API: %s (SHA-256 %s)",
        cert_path,
        pki.cert_fingerprint(cert),
    )
    return cert_path, key_path


def server_context(
    host: str, cert: Path | None, key: Path | None, state_dir: Path, host_id: str
) -> ssl.SSLContext | None:
    """The TLS context for a listener on `host`; None (plain HTTP) only on loopback without
    given files. Raises ValueError naming a file that cannot be used."""
    if cert is None and is_loopback(host):
        return None
    if cert is None or key is None:
        cert, key = self_signed_certificate(state_dir, host_id)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot use the API's certificate {cert} and key {key}: {exc}") from None
    return context
