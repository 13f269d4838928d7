"""Control's vault operations, mixed into `control.service.ControlService`.

Secrets are decrypted only to change them or to seal them for a site; a site gets a vault
sealed to its certificate's key once per (site, vault, version, certificate), then from a cache.
No message, log line or listing ever holds a secret value.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from control.fleet.access import Principal
from control.fleet.state import Fleet
from control.model import Invalid, NotFound, Site, check_name
from control.store.sqlite import Store
from control.vaults.envelope import (
    CryptoError,
    Envelope,
    Vault,
    check_distribute,
    check_secret_size,
    check_unseal,
    check_vault_size,
    secret_references,
)
from enforcer.shared.sealing import VaultError, seal

log = logging.getLogger(__name__)

MASTER_CHECK = "master-key-check"
MAX_KEY_NAME = 253

SealKey = tuple[str, str]  # site, vault
Sealed = tuple[int, str, dict[str, Any]]  # vault version, certificate serial, the entry


def _check_key_name(vault: str, secret: str, key: Any) -> str:
    if (
        not isinstance(key, str)
        or not key
        or len(key) > MAX_KEY_NAME
        or "/" in key
        or key in (".", "..")
        or not key.isprintable()
    ):
        raise Invalid(
            f"secret {vault}/{secret}: key names are 1 to {MAX_KEY_NAME} printable "
            "characters without /"
        )
    return key


class VaultOperations:
    store: Store
    fleet: Fleet
    envelope: Envelope
    clock: Any
    _lock: asyncio.Lock
    _sealed: dict[SealKey, Sealed]
    master_key_path: Path

    async def _recompute(self, names: Iterable[str] | None = None) -> None:
        raise NotImplementedError

    async def _load_vaults(self) -> None:
        check = await self.store.set_meta_once(MASTER_CHECK, self.envelope.check_value())
        self.envelope.verify(check, self.master_key_path)
        self.fleet.vaults = {v.name: v for v in await self.store.list_vaults()}

    # --- operators ------------------------------------------------------------------------

    def vault(self, who: Principal, name: str) -> Vault:
        vault = self.fleet.vaults.get(name)
        if vault is None or vault.tenant not in who.visible:
            raise NotFound(f"vault {name} does not exist")
        return vault

    def list_vaults(self, who: Principal) -> list[Vault]:
        return [v for _, v in sorted(self.fleet.vaults.items()) if v.tenant in who.visible]

    async def put_vault(
        self,
        who: Principal,
        name: str,
        distribute: Any,
        unseal: Any = None,
        tenant: Any = None,
    ) -> tuple[bool, Vault]:
        """Create a vault, or change its distribution or unseal mode; (created, vault)."""
        check_name(name, "vault")
        if not isinstance(distribute, str):
            raise Invalid("distribute: a label expression is required", [("distribute", "missing")])
        check_distribute(distribute)
        async with self._lock:
            existing = self.fleet.vaults.get(name)
            now = self.clock()
            if existing is not None:
                self.vault(who, name)
                if tenant is not None and tenant != existing.tenant:
                    raise Invalid(f"vault {name} belongs to tenant {existing.tenant}")
                mode = existing.unseal if unseal is None else str(unseal)
                check_unseal(mode)
                updated = Vault(
                    **{
                        **existing.__dict__,
                        "distribute": distribute,
                        "unseal": mode,
                        "updated": now,
                    }
                )
                await self.store.put_vault(updated, existing.version)
                self.fleet.vaults[name] = updated
                await self._recompute()
                return False, updated
            owner = str(tenant) if tenant else who.tenant
            who.require_visible(owner, f"tenant {owner!r}")
            mode = "local" if unseal is None else str(unseal)
            check_unseal(mode)
            _, wrapped = self.envelope.new_data_key(name)
            vault = Vault(
                name=name,
                tenant=owner,
                distribute=distribute,
                unseal=mode,
                version=1,
                wrapped_key=wrapped,
                blob=self.envelope.close_vault(wrapped, {}, name),
                keys={},
                created=now,
                updated=now,
            )
            await self.store.put_vault(vault, None)
            self.fleet.vaults[name] = vault
            await self._recompute()
        log.info("vault %s created for tenant %s", name, owner)
        return True, vault

    async def delete_vault(self, who: Principal, name: str) -> None:
        self.vault(who, name)
        async with self._lock:
            await self.store.delete_vault(name)
            self.fleet.vaults.pop(name, None)
            for key in [k for k in self._sealed if k[1] == name]:
                del self._sealed[key]
            await self._recompute()
        log.info("vault %s deleted", name)

    async def put_secret(self, who: Principal, vault_name: str, secret: str, values: Any) -> Vault:
        """Set a secret's keys and values (replacing the secret); the vault's version moves on."""
        self.vault(who, vault_name)
        check_name(secret, "secret")
        if not isinstance(values, dict) or not values:
            raise Invalid(f"secret {vault_name}/{secret}: send at least one key and its value")
        clean: dict[str, str] = {}
        for key, value in values.items():
            _check_key_name(vault_name, secret, key)
            if not isinstance(value, str):
                raise Invalid(f"secret {vault_name}/{secret}: the value of {key} is not a string")
            clean[key] = value
        check_secret_size(vault_name, secret, clean)
        return await self._change_secrets(who, vault_name, secret, clean)

    async def delete_secret(self, who: Principal, vault_name: str, secret: str) -> Vault:
        vault = self.vault(who, vault_name)
        if secret not in vault.keys:
            raise NotFound(f"secret {vault_name}/{secret} does not exist")
        return await self._change_secrets(who, vault_name, secret, None)

    async def _change_secrets(
        self, who: Principal, vault_name: str, secret: str, values: Mapping[str, str] | None
    ) -> Vault:
        async with self._lock:
            vault = self.vault(who, vault_name)
            try:
                secrets = self.envelope.open_vault(vault.wrapped_key, vault.blob, vault.name)
            except CryptoError as e:
                raise Invalid(f"vault {vault.name} cannot be opened with the master key") from e
            if values is None:
                secrets.pop(secret, None)
            else:
                secrets[secret] = dict(values)
            check_vault_size(vault.name, secrets)
            now = self.clock()
            updated = Vault(
                **{
                    **vault.__dict__,
                    "version": vault.version + 1,
                    "blob": self.envelope.close_vault(vault.wrapped_key, secrets, vault.name),
                    "keys": {s: sorted(k) for s, k in sorted(secrets.items())},
                    "updated": now,
                }
            )
            await self.store.put_vault(updated, vault.version)
            self.fleet.vaults[vault.name] = updated
            await self._recompute()
        log.info(
            "vault %s: secret %s %s (version %d)",
            vault.name,
            secret,
            "removed" if values is None else "set",
            updated.version,
        )
        return updated

    def check_secret_references(self, who: Principal, document: Mapping[str, Any]) -> None:
        """422 for an application naming a vault, secret or key that does not exist (to it)."""
        errors: list[tuple[str, str]] = []
        for path, vault_name, secret, key in secret_references(document):
            vault = self.fleet.vaults.get(vault_name)
            if vault is None or vault.tenant not in who.visible:
                errors.append((path, f"vault {vault_name!r} does not exist"))
            elif secret not in vault.keys:
                errors.append((path, f"vault {vault_name} has no secret {secret!r}"))
            elif key is not None and key not in vault.keys[secret]:
                errors.append((path, f"secret {vault_name}/{secret} has no key {key!r}"))
        if errors:
            raise Invalid(
                "the application names secrets that do not exist: "
                + "; ".join(f"{p}: {m}" for p, m in errors),
                errors,
            )

    # --- sites ----------------------------------------------------------------------------

    def vaults_for_site(self, site: Site) -> list[Vault]:
        return [self.fleet.vaults[name] for name, _, _ in self.fleet.vault_part(site)]

    def sealed_vaults(self, site: Site) -> list[dict[str, Any]]:
        """The site's vaults, each sealed to its certificate's key (cached per version)."""
        entries = []
        for vault in self.vaults_for_site(site):
            cached = self._sealed.get((site.name, vault.name))
            if cached is not None and cached[:2] == (vault.version, site.cert_serial):
                entry = cached[2]
            else:
                made = self._seal(site, vault)
                if made is None:
                    continue
                entry = made
                self._sealed[(site.name, vault.name)] = (vault.version, site.cert_serial, entry)
            entries.append({**entry, "unseal": vault.unseal})
        return entries

    def _seal(self, site: Site, vault: Vault) -> dict[str, Any] | None:
        try:
            public = serialization.load_pem_public_key(site.public_key.encode())
            if not isinstance(public, ec.EllipticCurvePublicKey):
                raise ValueError("not an EC key")
            secrets = self.envelope.open_vault(vault.wrapped_key, vault.blob, vault.name)
            sealed = seal(secrets, public, site=site.name, vault=vault.name, version=vault.version)
        except (ValueError, CryptoError, VaultError) as e:
            log.error("vault %s cannot be sealed for site %s: %s", vault.name, site.name, e)
            return None
        return {
            "name": vault.name,
            "tenant": vault.tenant,
            "version": vault.version,
            "sealed": sealed,
        }

    async def site_vault_key(self, site: Site) -> bytes:
        """The site's vault key for remote unseal, made on first request (kept wrapped)."""
        label = f"site|{site.name}"
        fresh = self.envelope.wrap(os.urandom(32), label)
        wrapped = await self.store.site_vault_key(site.name, fresh, self.clock())
        return self.envelope.unwrap(wrapped, label)


def vault_view(vault: Vault) -> dict[str, Any]:
    """What the API shows of a vault: names and keys, never a value."""
    return {
        "name": vault.name,
        "tenant": vault.tenant,
        "distribute": vault.distribute,
        "unseal": vault.unseal,
        "version": vault.version,
        "secrets": {name: list(keys) for name, keys in sorted(vault.keys.items())},
        "created": vault.created,
        "updated": vault.updated,
    }


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()
