"""Keys, certificate requests, fingerprints and TLS contexts shared by enforcer and control.

Sites hold an EC P-256 key; control signs their certificate with its own CA. The enforcer pins
that CA by the SHA-256 fingerprint of its DER encoding, which travels in the enrollment bundle.
Control imports these helpers; nothing here imports control.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "PrivateKey",
    "cert_fingerprint",
    "cert_not_after",
    "client_ssl_context",
    "generate_key",
    "key_to_pem",
    "load_cert",
    "load_key",
    "make_csr",
    "write_file",
]

PrivateKey = ec.EllipticCurvePrivateKey


def generate_key() -> PrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the private key is not an EC key")
    return key


def load_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def make_csr(key: PrivateKey, common_name: str) -> bytes:
    """A PEM certificate signing request for `common_name`, signed by `key`."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def cert_fingerprint(cert: x509.Certificate | bytes) -> str:
    """SHA-256 of the certificate's DER encoding, lower-case hex (PEM bytes are accepted)."""
    if isinstance(cert, bytes):
        cert = load_cert(cert)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def cert_not_after(cert: x509.Certificate) -> datetime.datetime:
    """The end of validity as an aware UTC datetime, on old and new cryptography alike."""
    value = getattr(cert, "not_valid_after_utc", None)
    if isinstance(value, datetime.datetime):
        return value
    return cert.not_valid_after.replace(tzinfo=datetime.UTC)


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` atomically (temp file, fsync, rename) with permissions `mode` from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def client_ssl_context(
    ca_pem: bytes, cert_path: Path | None = None, key_path: Path | None = None
) -> ssl.SSLContext:
    """A client context that trusts only `ca_pem` and presents the given certificate, if any."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode("ascii"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_path is not None:
        ctx.load_cert_chain(str(cert_path), str(key_path) if key_path else None)
    return ctx
