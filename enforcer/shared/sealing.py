"""Vaults on the wire and at rest: sealing to a site's key, and the site's own encryption.

In transit a vault is *sealed* to the site's EC P-256 key (the key of its TLS certificate):
ECDH with a fresh ephemeral key, HKDF-SHA256, AES-256-GCM, with the site, vault name and
version bound in as associated data, so a sealed vault cannot be replayed to another site or
passed off as another vault or version. Control seals (`seal`), the site opens (`unseal`).

At the site, vault contents are stored encrypted with AES-256-GCM under the site's *vault key*
(`encrypt_at_rest` / `decrypt_at_rest`): kept in a 0600 file with `unseal = "local"`, or only
in memory, fetched from control at start, with `unseal = "remote"`.

A tampered or corrupted blob raises `VaultError` naming the vault, never its contents.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = "edgeward-vault/1"
MAX_SECRET_BYTES = 64 * 1024  # one secret (all its keys together)
MAX_VAULT_BYTES = 1024 * 1024

Secrets = dict[str, dict[str, str]]  # secret name -> key -> value


class VaultError(Exception):
    """A vault could not be sealed, opened or read; the message never holds a secret value."""


def _aad(site: str, vault: str, version: int) -> bytes:
    return f"{FORMAT}|{site}|{vault}|{version}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (ValueError, TypeError) as exc:
        raise VaultError(f"{what} is not valid base64") from exc


def _derive(shared: bytes, aad: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=aad).derive(shared)


def _check_sizes(secrets: Mapping[str, Mapping[str, str]], vault: str) -> bytes:
    for name, values in secrets.items():
        size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
        if size > MAX_SECRET_BYTES:
            raise VaultError(
                f"secret {vault}/{name} is {size} bytes, over the limit of {MAX_SECRET_BYTES}"
            )
    raw = json.dumps(secrets, sort_keys=True, separators=(",", ":")).encode()
    if len(raw) > MAX_VAULT_BYTES:
        raise VaultError(f"vault {vault} is {len(raw)} bytes, over the limit of {MAX_VAULT_BYTES}")
    return raw


def seal(
    secrets: Mapping[str, Mapping[str, str]],
    site_public_key: ec.EllipticCurvePublicKey,
    *,
    site: str,
    vault: str,
    version: int,
) -> dict[str, Any]:
    """The sealed form of a vault for one site (JSON-able)."""
    raw = _check_sizes(secrets, vault)
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    aad = _aad(site, vault, version)
    key = _derive(ephemeral.exchange(ec.ECDH(), site_public_key), aad)
    nonce = os.urandom(12)
    public = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "format": FORMAT,
        "vault": vault,
        "version": version,
        "ephemeral": _b64(public),
        "nonce": _b64(nonce),
        "ciphertext": _b64(AESGCM(key).encrypt(nonce, raw, aad)),
    }


def unseal(
    sealed: Mapping[str, Any], site_key: ec.EllipticCurvePrivateKey, *, site: str
) -> Secrets:
    """Open a vault sealed to this site; VaultError when it is not for us or was tampered with."""
    vault = str(sealed.get("vault", "?"))
    if sealed.get("format") != FORMAT:
        raise VaultError(f"vault {vault}: unknown format {sealed.get('format')!r}")
    try:
        version = int(sealed["version"])
        public = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), _unb64(str(sealed["ephemeral"]), f"vault {vault} key")
        )
        nonce = _unb64(str(sealed["nonce"]), f"vault {vault} nonce")
        ciphertext = _unb64(str(sealed["ciphertext"]), f"vault {vault} ciphertext")
    except (KeyError, ValueError, TypeError) as exc:
        raise VaultError(f"vault {vault}: malformed sealed vault ({type(exc).__name__})") from exc
    aad = _aad(site, vault, version)
    try:
        raw = AESGCM(_derive(site_key.exchange(ec.ECDH(), public), aad)).decrypt(
            nonce, ciphertext, aad
        )
    except (InvalidTag, ValueError) as exc:
        raise VaultError(
            f"vault {vault} version {version}: does not open with this site's key "
            "(tampered with, corrupted, or sealed for another site)"
        ) from exc
    return _secrets(raw, vault)


def _secrets(raw: bytes, vault: str) -> Secrets:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise VaultError(f"vault {vault}: contents are not JSON") from exc
    if not isinstance(doc, dict) or not all(
        isinstance(v, dict) and all(isinstance(x, str) for x in v.values()) for v in doc.values()
    ):
        raise VaultError(f"vault {vault}: contents are not secret -> key -> value")
    return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in doc.items()}


def new_vault_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def encrypt_at_rest(secrets: Mapping[str, Mapping[str, str]], key: bytes, *, vault: str) -> bytes:
    raw = json.dumps(secrets, sort_keys=True, separators=(",", ":")).encode()
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, raw, f"{FORMAT}|rest|{vault}".encode())


def decrypt_at_rest(blob: bytes, key: bytes, *, vault: str) -> Secrets:
    try:
        raw = AESGCM(key).decrypt(blob[:12], blob[12:], f"{FORMAT}|rest|{vault}".encode())
    except (InvalidTag, ValueError) as exc:
        raise VaultError(
            f"vault {vault}: the stored copy does not open with the vault key"
        ) from exc
    return _secrets(raw, vault)
