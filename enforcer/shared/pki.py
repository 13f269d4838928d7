"""Keys, certificate requests, fingerprints and TLS contexts shared by enforcer and control.

Sites hold an EC P-256 key; control signs their certificate with its own CA. The enforcer pins
that CA by the SHA-256 fingerprint of its DER encoding, which travels in the enrollment bundle.
Control imports these helpers; nothing here imports control.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enforcer.shared.lazy import lazy

if TYPE_CHECKING:  # imported on first use: a host that signs nothing does without (~8 MB)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID, ObjectIdentifier
else:
    x509 = lazy("cryptography.x509")
    hashes = lazy("cryptography.hazmat.primitives.hashes")
    serialization = lazy("cryptography.hazmat.primitives.serialization")
    ec = lazy("cryptography.hazmat.primitives.asymmetric.ec")
    NameOID = lazy("cryptography.x509.oid", "NameOID")

__all__ = [
    "PrivateKey",
    "cert_fingerprint",
    "cert_not_after",
    "cert_to_pem",
    "client_ssl_context",
    "create_ca",
    "general_names",
    "generate_key",
    "issue_leaf",
    "key_to_pem",
    "load_cert",
    "load_key",
    "make_csr",
    "self_signed",
    "write_file",
    "write_key_and_cert",
]

if TYPE_CHECKING:
    PrivateKey = ec.EllipticCurvePrivateKey


def __getattr__(name: str) -> Any:
    if name == "PrivateKey":  # at run time: the class itself, imported now
        return ec.EllipticCurvePrivateKey
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_key_and_cert(
    key_path: Path, key: PrivateKey, cert_path: Path, cert: x509.Certificate
) -> None:
    """Write a key (0600) and then its certificate (0644), each atomically."""
    write_file(key_path, key_to_pem(key), 0o600)
    write_file(cert_path, cert_to_pem(cert))


def general_names(hosts: list[str]) -> list[x509.GeneralName]:
    """Subject alternative names for `hosts`, in order: IP addresses as such, the rest as DNS."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _key_usage(*, key_encipherment: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    """A builder valid from five minutes ago (clock skew) for `days`, with a random serial."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def create_ca(subject: x509.Name, days: int) -> tuple[x509.Certificate, PrivateKey]:
    """A new self-signed CA (path length 0, signs certificates and CRLs) and its key."""
    key = generate_key()
    cert = (
        _builder(subject, subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    days: int,
    *,
    usages: list[ObjectIdentifier],
    hosts: list[str] | None = None,
    key_usage: bool = False,
    key_encipherment: bool = False,
) -> x509.Certificate:
    """A non-CA certificate for `public_key` signed by the CA, with the extended key `usages`,
    `hosts` as subject alternative names when given, and a critical key usage (digital
    signature, and key encipherment if asked) when `key_usage`."""
    builder = (
        _builder(subject, ca_cert.subject, public_key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if key_usage:
        builder = builder.add_extension(
            _key_usage(key_encipherment=key_encipherment), critical=True
        )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(general_names(hosts)), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


def self_signed(
    subject: x509.Name, hosts: list[str], days: int
) -> tuple[x509.Certificate, PrivateKey]:
    """A new key and a self-signed, non-CA certificate for `hosts` (in the order given)."""
    key = generate_key()
    cert = (
        _builder(subject, subject, key.public_key(), days)
        .add_extension(x509.SubjectAlternativeName(general_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def client_ssl_context(
    ca_pem: bytes, cert_path: Path | None = None, key_path: Path | None = None
) -> ssl.SSLContext:
    """A client context that trusts only `ca_pem` and presents the given certificate, if any."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode("ascii"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_path is not None:
        ctx.load_cert_chain(str(cert_path), str(key_path) if key_path else None)
    return ctx
