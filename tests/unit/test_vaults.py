"""Sealing vaults to a site, and the site's encryption at rest."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from enforcer.shared.sealing import (
    MAX_SECRET_BYTES,
    VaultError,
    decrypt_at_rest,
    encrypt_at_rest,
    new_vault_key,
    seal,
    unseal,
)

SECRETS = {"creds": {"api-key": "s3cr3t-value", "user": "vision"}}


def site_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_a_sealed_vault_opens_only_for_its_site_and_hides_its_values() -> None:
    key = site_key()
    sealed = seal(SECRETS, key.public_key(), site="store-1", vault="vision", version=3)
    assert "s3cr3t-value" not in str(sealed)
    assert unseal(sealed, key, site="store-1") == SECRETS
    with pytest.raises(VaultError, match="does not open"):
        unseal(sealed, site_key(), site="store-1")  # another site's key
    with pytest.raises(VaultError, match="does not open"):
        unseal(sealed, key, site="store-2")  # replayed to another site name


def test_tampering_with_any_field_is_refused_without_revealing_contents() -> None:
    key = site_key()
    sealed = seal(SECRETS, key.public_key(), site="s", vault="vision", version=1)
    raw = bytearray(base64.b64decode(sealed["ciphertext"]))
    raw[5] ^= 1
    for bad in (
        {**sealed, "ciphertext": base64.b64encode(bytes(raw)).decode()},
        {**sealed, "version": 2},
        {**sealed, "vault": "other"},
        {**sealed, "nonce": "!!!"},
        {**sealed, "format": "v0"},
        {k: v for k, v in sealed.items() if k != "ephemeral"},
    ):
        with pytest.raises(VaultError) as err:
            unseal(bad, key, site="s")
        assert "s3cr3t" not in str(err.value)


def test_a_secret_over_the_size_limit_is_refused_by_name() -> None:
    big = {"blob": {"data": "x" * (MAX_SECRET_BYTES + 1)}}
    with pytest.raises(VaultError, match=r"secret vision/blob is \d+ bytes, over the limit"):
        seal(big, site_key().public_key(), site="s", vault="vision", version=1)


def test_at_rest_the_vault_is_encrypted_under_the_vault_key() -> None:
    key = new_vault_key()
    blob = encrypt_at_rest(SECRETS, key, vault="vision")
    assert b"s3cr3t" not in blob
    assert decrypt_at_rest(blob, key, vault="vision") == SECRETS
    with pytest.raises(VaultError, match="does not open"):
        decrypt_at_rest(blob, new_vault_key(), vault="vision")
    with pytest.raises(VaultError):
        decrypt_at_rest(blob, key, vault="other")
