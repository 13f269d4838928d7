"""The site's control identity in the site store, sealed to each of its hosts.

Enrollment belongs to the site, not to a host (DESIGN.md, "Control and sync"): the site key,
its certificate, control's URL and control's CA live in the site store, so whichever host
leads syncs with control, and a new leader needs no new enrollment. The store never holds them
in clear. Every host has an EC P-256 *host key* of its own (``<state-dir>/cluster/host-key.pem``,
0600, made on its first start in a site) and publishes the public half under
/site/hostkeys/<host>. The identity is sealed to each host's public key
(`enforcer.shared.sealing.seal`: ECDH with a fresh key, HKDF-SHA256, AES-256-GCM) under
/site/identity/<host>; a host that holds the identity seals it for every host whose copy is
missing or sealed to another key. Reading the store, or a copy of its data, gives no one the
site's key; each host's own key opens its own copy only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from enforcer.shared import pki
from enforcer.shared.lazy import lazy
from enforcer.site.kv.base import SiteKV

if TYPE_CHECKING:  # imported on first use (`enforcer.shared.lazy`): a host that opens nothing
    from cryptography.hazmat.primitives import serialization  # does without them
    from cryptography.hazmat.primitives.asymmetric import ec
else:
    serialization = lazy("cryptography.hazmat.primitives.serialization")
    ec = lazy("cryptography.hazmat.primitives.asymmetric.ec")

__all__ = [
    "FIELDS",
    "HOSTKEYS",
    "IDENTITY",
    "IdentityError",
    "SiteIdentityKeys",
    "load_or_create_host_key",
    "open_identity",
    "seal_identity",
]

log = logging.getLogger(__name__)

HOSTKEYS = "/site/hostkeys/"
IDENTITY = "/site/identity/"
FIELDS = ("site", "url", "ca_fingerprint", "enrolled", "key", "cert", "ca")
_AAD_SITE = "edgeward-site-identity"  # bound into every sealed copy (with the vault name)
_VAULT = "site-identity"


class IdentityError(Exception):
    """A sealed identity that does not open or is not one; the message says which."""


def load_or_create_host_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """This host's key for the site's sealed records, made (0600) on first use."""
    try:
        return pki.load_key(path.read_bytes())
    except FileNotFoundError:
        key = pki.generate_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        pki.write_file(path, pki.key_to_pem(key), 0o600)
        return key


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _fingerprint(pem: bytes) -> str:
    return hashlib.sha256(pem.strip()).hexdigest()


def seal_identity(identity: Mapping[str, str], recipient_pem: bytes) -> bytes:
    """The identity's copy for the host whose public key is `recipient_pem`."""
    public = serialization.load_pem_public_key(recipient_pem)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise IdentityError("a host key in the site store is not an EC public key")
    from enforcer.shared.sealing import seal

    fields = {name: str(identity[name]) for name in FIELDS}
    sealed = seal({"identity": fields}, public, site=_AAD_SITE, vault=_VAULT, version=1)
    body = {"recipient": _fingerprint(recipient_pem), "sealed": sealed}
    return json.dumps(body, sort_keys=True).encode()


def open_identity(data: bytes, key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """Open this host's copy; IdentityError when it is not one or not sealed to `key`."""
    from enforcer.shared.sealing import VaultError, unseal

    try:
        body = json.loads(data)
        fields = unseal(body["sealed"], key, site=_AAD_SITE)["identity"]
    except (ValueError, KeyError, TypeError, VaultError) as exc:
        raise IdentityError(f"this host's copy of the site identity does not open: {exc}") from exc
    missing = [name for name in FIELDS if name not in fields]
    if missing:
        raise IdentityError(f"the site identity lacks {', '.join(missing)}")
    return {name: fields[name] for name in FIELDS}


def _recipient(data: bytes) -> str:
    try:
        return str(json.loads(data)["recipient"])
    except (ValueError, KeyError, TypeError):
        return ""


class SiteIdentityKeys:
    """This host's view of the sealed identity: its key published, its copy read, the others'
    copies made. Every call may raise KVError."""

    def __init__(
        self, kv: SiteKV, host: str, key: ec.EllipticCurvePrivateKey | None = None, *,
        path: Path | None = None,
    ) -> None:  # fmt: skip
        if key is None and path is None:
            raise ValueError("SiteIdentityKeys needs the host key or its path")
        self.kv = kv
        self.host = host
        self._key = key
        self._path = path
        self._public: bytes | None = None

    @classmethod
    def at(cls, kv: SiteKV, host: str, path: Path) -> SiteIdentityKeys:
        """With the host key at `path`, read (or made) only when first needed: a host of a
        site that holds no identity loads no cryptography (about 8 MB of a worker)."""
        return cls(kv, host, path=path)

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        if self._key is None:
            assert self._path is not None
            self._key = load_or_create_host_key(self._path)
        return self._key

    @property
    def public(self) -> bytes:
        if self._public is None:
            self._public = public_pem(self.key)
        return self._public

    async def publish_key(self) -> None:
        entry = await self.kv.get(HOSTKEYS + self.host)
        if entry is None or entry.value != self.public:
            await self.kv.put(HOSTKEYS + self.host, self.public)

    async def enrolled(self) -> bool:
        """Whether the site holds an identity (sealed to any host)."""
        entries, _ = await self.kv.range(IDENTITY)
        return bool(entries)

    async def mine(self) -> dict[str, str] | None:
        """The identity from this host's copy; None when the site has none for this host."""
        entry = await self.kv.get(IDENTITY + self.host)
        if entry is None or _recipient(entry.value) != _fingerprint(self.public):
            return None
        return open_identity(entry.value, self.key)

    async def share(self, identity: Mapping[str, str]) -> list[str]:
        """Seal `identity` for every host whose copy is missing or not sealed to its key now;
        the hosts it sealed for."""
        keys, _ = await self.kv.range(HOSTKEYS)
        copies, _ = await self.kv.range(IDENTITY)
        have = {e.key[len(IDENTITY) :]: _recipient(e.value) for e in copies}
        sealed_for = []
        for entry in keys:
            host = entry.key[len(HOSTKEYS) :]
            if have.get(host) == _fingerprint(entry.value):
                continue
            try:
                body = seal_identity(identity, entry.value)
            except (IdentityError, ValueError) as exc:
                log.error("cannot seal the site identity for host %s: %s", host, exc)
                continue
            await self.kv.put(IDENTITY + host, body)
            sealed_for.append(host)
        return sealed_for
