"""Vaults at control: the envelope encryption of secrets at rest, and which sites get a vault.

Every vault has its own 32-byte *data key*; its secrets are stored as one AES-256-GCM blob under
that key. The data key is stored *wrapped* (AES-256-GCM) by the *master key* kept in
``state-dir/master.key`` (0600, 32 bytes, made on first start). A small encrypted check value
in the database tells a wrong master key at start, before anything is read or written.

Everything here is pure (no I/O but `load_or_create_master_key`); a `CryptoError` never holds a
secret value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control.model import SYSTEM_TENANT, Invalid, Site
from enforcer.shared import labels as label_expr
from enforcer.shared.pki import write_file
from enforcer.shared.sealing import MAX_SECRET_BYTES, MAX_VAULT_BYTES

MASTER_KEY_FILE = "master.key"
CHECK_PLAINTEXT = b"edgeward-control-master-key-check/1"
UNSEAL_MODES = ("local", "remote")

Secrets = dict[str, dict[str, str]]


class CryptoError(Exception):
    """A blob does not open with the key given (wrong key, or corrupted)."""


class MasterKeyError(Exception):
    """The master key file is missing, malformed, or not the key the database was made with."""


def load_or_create_master_key(state_dir: Path) -> tuple[bytes, bool]:
    """The master key from ``master.key`` (0600), created on first start; (key, created)."""
    path = state_dir / MASTER_KEY_FILE
    if path.exists():
        try:
            key = path.read_bytes()
        except OSError as e:
            raise MasterKeyError(f"cannot read the master key {path}: {e.strerror}") from e
        if len(key) != 32:
            raise MasterKeyError(
                f"the master key {path} is {len(key)} bytes, not 32: restore the right file"
            )
        return key, False
    key = AESGCM.generate_key(bit_length=256)
    write_file(path, key, 0o600)
    return key, True


def _encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], aad)
    except (InvalidTag, ValueError) as e:
        raise CryptoError(f"{what} does not open with this key") from e


@dataclass(frozen=True)
class Envelope:
    """The master key, and what it wraps: data keys and the check value."""

    master: bytes

    def check_value(self) -> bytes:
        return _encrypt(self.master, CHECK_PLAINTEXT, b"check")

    def verify(self, check: bytes, path: Path) -> None:
        """Raise MasterKeyError (naming `path`) unless `check` was made with this master key."""
        try:
            ok = _decrypt(self.master, check, b"check", "the check value") == CHECK_PLAINTEXT
        except CryptoError:
            ok = False
        if not ok:
            raise MasterKeyError(
                f"the master key in {path} is not the one control's database was encrypted "
                "with: restore the original file (control refuses to start)"
            )

    def new_data_key(self, vault: str) -> tuple[bytes, bytes]:
        """A fresh data key for `vault`: (key, key wrapped by the master key)."""
        key = AESGCM.generate_key(bit_length=256)
        return key, self.wrap(key, f"vault|{vault}")

    def wrap(self, key: bytes, label: str) -> bytes:
        return _encrypt(self.master, key, f"wrap|{label}".encode())

    def unwrap(self, wrapped: bytes, label: str) -> bytes:
        return _decrypt(self.master, wrapped, f"wrap|{label}".encode(), f"key {label}")

    def open_vault(self, wrapped_key: bytes, blob: bytes, vault: str) -> Secrets:
        key = self.unwrap(wrapped_key, f"vault|{vault}")
        raw = _decrypt(key, blob, f"secrets|{vault}".encode(), f"vault {vault}")
        doc = json.loads(raw)
        return {str(s): {str(k): str(v) for k, v in keys.items()} for s, keys in doc.items()}

    def close_vault(
        self, wrapped_key: bytes, secrets: Mapping[str, Mapping[str, str]], vault: str
    ) -> bytes:
        key = self.unwrap(wrapped_key, f"vault|{vault}")
        raw = json.dumps(secrets, sort_keys=True, separators=(",", ":")).encode()
        return _encrypt(key, raw, f"secrets|{vault}".encode())


@dataclass
class Vault:
    """A vault as control holds it: never a value, only names, keys and the sealed blob."""

    name: str
    tenant: str
    distribute: str
    unseal: str
    version: int
    wrapped_key: bytes
    blob: bytes
    keys: dict[str, list[str]] = field(default_factory=dict)  # secret -> its keys' names
    created: float = 0.0
    updated: float = 0.0


def check_distribute(expression: str) -> None:
    try:
        label_expr.parse(expression)
    except label_expr.LabelSyntaxError as e:
        raise Invalid(f"distribute: {e}", [("distribute", str(e))]) from e


def check_unseal(mode: str) -> None:
    if mode not in UNSEAL_MODES:
        raise Invalid(f"unseal: {mode!r} is not one of local, remote", [("unseal", mode)])


def check_secret_size(vault: str, secret: str, values: Mapping[str, str]) -> None:
    """Raise Invalid naming the secret (never a value) when it is over the size limit."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
    if size > MAX_SECRET_BYTES:
        raise Invalid(
            f"secret {vault}/{secret} is {size} bytes, over the limit of {MAX_SECRET_BYTES}",
            [(f"secrets.{secret}", "too large")],
        )


def check_vault_size(vault: str, secrets: Mapping[str, Mapping[str, str]]) -> None:
    raw = json.dumps(secrets, sort_keys=True, separators=(",", ":")).encode()
    if len(raw) > MAX_VAULT_BYTES:
        raise Invalid(
            f"vault {vault} would be {len(raw)} bytes, over the limit of {MAX_VAULT_BYTES}"
        )


def distributed_to(vault: Vault, site: Site, eligible: bool) -> bool:
    """Whether `site` receives `vault`: its labels match `distribute` and the vault's tenant may
    use the site (`eligible`: the tenant, or an ancestor, is assigned to it; system: any)."""
    if site.revoked or site.enrolled is None:
        return False
    if vault.tenant != SYSTEM_TENANT and not eligible:
        return False
    return label_expr.evaluate(vault.distribute, site.all_labels)


def secret_references(document: Mapping[str, object]) -> list[tuple[str, str, str, str | None]]:
    """(path, vault, secret, key or None) for every secret an application document names."""
    found: list[tuple[str, str, str, str | None]] = []
    services = document.get("services")
    for i, service in enumerate(services if isinstance(services, list) else []):
        if not isinstance(service, dict):
            continue
        for part, key in (("variables", "value-from-secret"), ("volumes", "secret")):
            for j, item in enumerate(service.get(part) or []):
                ref = item.get(key) if isinstance(item, dict) else None
                if isinstance(ref, dict):
                    found.append(
                        (
                            f"services[{i}].{part}[{j}].{key}",
                            str(ref.get("vault")),
                            str(ref.get("secret")),
                            str(ref["key"]) if ref.get("key") is not None else None,
                        )
                    )
    return found
