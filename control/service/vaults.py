"""Vaults at control: operators change them, sites get them sealed to their certificate's key.

Secrets are decrypted only to change them or to seal them for a site; a site gets a vault
sealed to its certificate's key once per (site, vault, version, certificate), then from a cache.
The cryptography runs in a worker thread, never on the event loop. No message, log line or
listing ever holds a secret value.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from control.fleet.access import Principal
from control.model import Invalid, NotFound, Site, check_name
from control.service.core import Core
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
SealMark = tuple[int, str, str]  # vault version, unseal mode, certificate serial
Sealed = tuple[SealMark, bytes]  # what it was sealed for, the entry (JSON)


def _mark(vault: Vault, site: Site) -> SealMark:
    return vault.version, vault.unseal, site.cert_serial


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


class Vaults:
    def __init__(self, core: Core, envelope: Envelope, master_key_path: Path) -> None:
        self.core = core
        self.envelope = envelope
        self.master_key_path = master_key_path
        self._sealed: dict[SealKey, Sealed] = {}

    async def load(self) -> None:
        """Check the master key against the database, then load the vaults."""
        store = self.core.store.vaults
        check = await store.set_meta_once(MASTER_CHECK, self.envelope.check_value())
        self.envelope.verify(check, self.master_key_path)
        self.core.fleet.vaults = {v.name: v for v in await store.load()}

    async def reload(self) -> None:
        """The vaults again (another control process changed one)."""
        self.core.fleet.vaults = {v.name: v for v in await self.core.store.vaults.load()}

    # --- operators ------------------------------------------------------------------------

    def get(self, who: Principal, name: str) -> Vault:
        vault = self.core.fleet.vaults.get(name)
        if vault is None or vault.tenant not in who.visible:
            raise NotFound(f"vault {name} does not exist")
        return vault

    def visible(self, who: Principal) -> list[Vault]:
        return [v for _, v in sorted(self.core.fleet.vaults.items()) if v.tenant in who.visible]

    async def put(
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
        async with self.core.lock:
            existing = self.core.fleet.vaults.get(name)
            now = self.core.clock()
            if existing is not None:
                self.get(who, name)
                self.core.refuse_owned("vault", name)
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
                await self.core.store.vaults.put(updated, existing.version)
                self.core.fleet.vaults[name] = updated
                await self.core.recompute()
                return False, updated
            owner = str(tenant) if tenant else who.tenant
            who.require_visible(owner, f"tenant {owner!r}")
            mode = "local" if unseal is None else str(unseal)
            check_unseal(mode)
            wrapped, blob = await asyncio.to_thread(self._new_vault_key, name)
            vault = Vault(
                name=name,
                tenant=owner,
                distribute=distribute,
                unseal=mode,
                version=1,
                wrapped_key=wrapped,
                blob=blob,
                keys={},
                created=now,
                updated=now,
            )
            await self.core.store.vaults.put(vault, None)
            self.core.fleet.vaults[name] = vault
            await self.core.recompute()
        log.info("vault %s created for tenant %s", name, owner)
        return True, vault

    async def delete(self, who: Principal, name: str) -> None:
        self.get(who, name)
        self.core.refuse_owned("vault", name)
        async with self.core.lock:
            await self.core.store.vaults.delete(name)
            self.core.fleet.vaults.pop(name, None)
            for key in [k for k in self._sealed if k[1] == name]:
                del self._sealed[key]
            await self.core.recompute()
        log.info("vault %s deleted", name)

    def forget_sealed(self, name: str) -> None:
        """Drop the sealed copies of a vault that was removed (by a Git source)."""
        for key in [k for k in self._sealed if k[1] == name]:
            del self._sealed[key]

    async def put_secret(self, who: Principal, vault_name: str, secret: str, values: Any) -> Vault:
        """Set a secret's keys and values (replacing the secret); the vault's version moves on."""
        self.get(who, vault_name)
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
        vault = self.get(who, vault_name)
        if secret not in vault.keys:
            raise NotFound(f"secret {vault_name}/{secret} does not exist")
        return await self._change_secrets(who, vault_name, secret, None)

    async def _change_secrets(
        self, who: Principal, vault_name: str, secret: str, values: Mapping[str, str] | None
    ) -> Vault:
        async with self.core.lock:
            vault = self.get(who, vault_name)
            try:
                secrets = await asyncio.to_thread(
                    self.envelope.open_vault, vault.wrapped_key, vault.blob, vault.name
                )
            except CryptoError as e:
                raise Invalid(f"vault {vault.name} cannot be opened with the master key") from e
            if values is None:
                secrets.pop(secret, None)
            else:
                secrets[secret] = dict(values)
            check_vault_size(vault.name, secrets)
            blob = await asyncio.to_thread(
                self.envelope.close_vault, vault.wrapped_key, secrets, vault.name
            )
            now = self.core.clock()
            updated = Vault(
                **{
                    **vault.__dict__,
                    "version": vault.version + 1,
                    "blob": blob,
                    "keys": {s: sorted(k) for s, k in sorted(secrets.items())},
                    "updated": now,
                }
            )
            await self.core.store.vaults.put(updated, vault.version)
            self.core.fleet.vaults[vault.name] = updated
            await self.core.recompute()
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
            vault = self.core.fleet.vaults.get(vault_name)
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

    def for_site(self, site: Site) -> list[Vault]:
        return [self.core.fleet.vaults[name] for name, _, _ in self.core.fleet.vault_part(site)]

    async def sealed(self, site: Site) -> list[bytes]:
        """The site's vaults (JSON objects), each sealed to its certificate's key and cached
        per (vault version, unseal mode, certificate); what is not cached yet is sealed and
        serialised in a worker thread."""
        vaults = self.for_site(site)
        missing = [v for v in vaults if self._cached(site, v) is None]
        if missing:
            made = await asyncio.to_thread(self._seal_all, site, missing)
            for vault, entry in zip(missing, made, strict=True):
                if entry is not None:
                    self._sealed[(site.name, vault.name)] = (_mark(vault, site), entry)
        return [e for e in (self._cached(site, v) for v in vaults) if e is not None]

    def _cached(self, site: Site, vault: Vault) -> bytes | None:
        cached = self._sealed.get((site.name, vault.name))
        if cached is not None and cached[0] == _mark(vault, site):
            return cached[1]
        return None

    def _new_vault_key(self, name: str) -> tuple[bytes, bytes]:
        """A new vault's wrapped data key and its empty blob (in a worker thread)."""
        _, wrapped = self.envelope.new_data_key(name)
        return wrapped, self.envelope.close_vault(wrapped, {}, name)

    def _seal_all(self, site: Site, vaults: list[Vault]) -> list[bytes | None]:
        """Seal `vaults` for `site` (in a worker thread: no shared state is touched)."""
        return [self._seal(site, vault) for vault in vaults]

    def _seal(self, site: Site, vault: Vault) -> bytes | None:
        """The vault's entry of the site's desired state (JSON), sealed to the site's key."""
        try:
            public = serialization.load_pem_public_key(site.public_key.encode())
            if not isinstance(public, ec.EllipticCurvePublicKey):
                raise ValueError("not an EC key")
            secrets = self.envelope.open_vault(vault.wrapped_key, vault.blob, vault.name)
            sealed = seal(secrets, public, site=site.name, vault=vault.name, version=vault.version)
        except (ValueError, CryptoError, VaultError) as e:
            log.error("vault %s cannot be sealed for site %s: %s", vault.name, site.name, e)
            return None
        entry = {
            "name": vault.name,
            "tenant": vault.tenant,
            "version": vault.version,
            "sealed": sealed,
            "unseal": vault.unseal,
        }
        return json.dumps(entry, separators=(",", ":")).encode()

    async def site_key(self, site: Site) -> bytes:
        """The site's vault key for remote unseal, made on first request (kept wrapped)."""
        label = f"site|{site.name}"
        fresh = await asyncio.to_thread(self.envelope.wrap, os.urandom(32), label)
        wrapped = await self.core.store.vaults.site_key(site.name, fresh, self.core.clock())
        return await asyncio.to_thread(self.envelope.unwrap, wrapped, label)
