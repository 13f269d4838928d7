"""The site's vaults: received sealed from control, kept encrypted at rest, used by instances.

Control's desired state carries ``vaults: [{name, tenant, version, unseal, sealed}]`` (only the
vaults whose `distribute` expression matches this site; `enforcer.link.sync` hands them to the
daemon before the applications). `SiteVaults.apply` opens each new version with the site's TLS
key (`enforcer.shared.sealing.unseal`), stores it in SQLite encrypted at rest
(`encrypt_at_rest`), and
keeps the opened contents in memory for the instances. The latest version wins; a vault that is
no longer in the desired state is deleted. A sealed vault that does not open (tampered with,
corrupted, for another site) is refused with a ``vault.rejected`` event naming the vault, and
the version stored before stays in use.

The key at rest depends on the vault's ``unseal``: ``"local"`` (default) uses the site's key
in ``<state-dir>/site/vault.key`` (0600, made once), so an offline reboot starts everything;
``"remote"`` uses control's key for the site, which lives only in memory, fetched from control
(``GET /v1/sync/vault-key``, `enforcer.link.sync.SyncClient.fetch_vault_key`) at start: until it
arrives, instances that need such a vault wait (`WAITING_FOR_KEY`), everything else runs.

No secret value is ever logged, put in an event or an exception message, or stored in clear.
The crypto stack is imported only when a vault is actually handled.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enforcer.secrets.files import SecretFiles
from enforcer.shared.spec.model import SecretRef, Service, VolumeKind
from enforcer.site.store import Store, StoredVault

__all__ = [
    "KEY_FILE",
    "WAITING_FOR_KEY",
    "SiteVaults",
    "instance_secrets",
    "missing_secret",
    "secret_refs",
]

log = logging.getLogger(__name__)

LOCAL, REMOTE = "local", "remote"
KEY_FILE = "vault.key"
WAITING_FOR_KEY = "waiting for the vault key from control"
FETCH_RETRY_MAX = 30.0

EventSink = Callable[..., Awaitable[None]]
KeyFetcher = Callable[[], Awaitable[bytes]]


def _decode_key(text: str) -> bytes | None:
    try:
        key = base64.b64decode(text.strip().encode(), validate=True)
    except ValueError:
        return None
    return key if len(key) == 32 else None


# -- what instances need -----------------------------------------------------------------------


def secret_refs(service: Service) -> list[SecretRef]:
    """Every secret the service refers to: its secret volumes, then its secret variables."""
    refs = [v.secret for v in service.volumes if v.kind is VolumeKind.SECRET and v.secret]
    refs += [v.value_from_secret for v in service.variables if v.value_from_secret is not None]
    return refs


@dataclass(frozen=True)
class _Open:
    tenant: str
    version: int
    unseal: str  # local | remote: which key it is stored under
    secrets: Mapping[str, Mapping[str, str]] = field(repr=False)


def _visible(app_tenant: str, vault_tenant: str) -> bool:
    """An application uses its own tenant's vaults only: a site-local application (tenant
    ``system``) reads the site's ``system`` vaults, never a tenant's."""
    return app_tenant == vault_tenant


def missing_secret(tenant: str, service: Service, vaults: SiteVaults) -> str:
    """Why the service's instances cannot start for want of a secret ('' when they can)."""
    for ref in secret_refs(service):
        waiting = vaults.waiting.get(ref.vault)
        if waiting is not None and _visible(tenant, waiting):
            return WAITING_FOR_KEY
        found = vaults.opened.get(ref.vault)
        secret = found.secrets.get(ref.secret) if found and _visible(tenant, found.tenant) else None
        if secret is None or (ref.key is not None and ref.key not in secret):
            return f"secret {ref.vault}/{ref.secret} not available at this site"
    return ""


def instance_secrets(
    tenant: str, service: Service, vaults: SiteVaults, files: SecretFiles
) -> tuple[str, dict[tuple[str, str, str], str] | None]:
    """(why the service's instances must wait, or ''; the secret values they may use)."""
    if not secret_refs(service):
        return "", None
    reason = missing_secret(tenant, service, vaults)
    if not reason and any(v.kind is VolumeKind.SECRET for v in service.volumes):
        error = files.ensure()
        reason = f"secret volumes unavailable: {error}" if error else ""
    return reason, None if reason else vaults.values_for(tenant)


# -- the store ---------------------------------------------------------------------------------


class SiteVaults:
    """The vaults at this site (see the module documentation)."""

    def __init__(self, store: Store, state_dir: Path, *, emit: EventSink) -> None:
        self.store = store
        self.key_path = state_dir / "site" / KEY_FILE
        self.site_key_path = state_dir / "site" / "key.pem"
        self._emit = emit
        self.opened: dict[str, _Open] = {}
        self._locked: dict[str, StoredVault] = {}  # stored, the key to open them not here yet
        # received while control's key is missing: name -> (entry, the site it is sealed for)
        self._sealed: dict[str, tuple[Mapping[str, Any], str]] = {}
        self._restore: set[str] = set()  # open, to be stored again under control's key
        self._remote_key: bytes | None = None  # only ever in memory
        self._fetch: KeyFetcher | None = None
        self._fetch_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one change at a time: desired vaults, control's key
        self.on_key: Callable[[], Awaitable[None]] | None = None  # control's key arrived

    @property
    def waiting(self) -> dict[str, str]:
        """Vaults (name -> tenant) that are here but cannot be opened until the key comes."""
        out = {name: v.tenant for name, v in self._locked.items() if v.unseal == REMOTE}
        out.update((name, str(e.get("tenant", ""))) for name, (e, _) in self._sealed.items())
        return out

    def values_for(self, tenant: str) -> dict[tuple[str, str, str], str]:
        """(vault, secret, key) -> value of every vault an application of `tenant` may use."""
        return {
            (name, secret, key): value
            for name, v in self.opened.items()
            if _visible(tenant, v.tenant)
            for secret, keys in v.secrets.items()
            for key, value in keys.items()
        }

    # -- start and stop --------------------------------------------------------------------
    async def load(self) -> None:
        """Open what the store holds: local vaults now, remote ones once the key is fetched."""
        async with self._lock:
            self._locked = {v.name: v for v in await self.store.vaults()}
            if any(v.unseal == LOCAL for v in self._locked.values()):
                await self._open_locked(LOCAL)
        self._start_fetch()

    def set_fetcher(self, fetch: KeyFetcher | None) -> None:
        """How to fetch the key from control (known once the site is enrolled)."""
        self._fetch = fetch
        self._start_fetch()

    async def close(self) -> None:
        task, self._fetch_task = self._fetch_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    # -- control's desired vaults ----------------------------------------------------------
    async def apply(
        self, vaults: Sequence[Mapping[str, Any]], unseal: str = LOCAL, *, site: str
    ) -> bool:
        """Make the site's vaults those of `vaults` (each may say its own ``unseal``, else
        `unseal`); True when any vault's contents changed."""
        async with self._lock:
            return await self._apply(vaults, unseal, site)

    async def _apply(self, vaults: Sequence[Mapping[str, Any]], unseal: str, site: str) -> bool:
        wanted: dict[str, Mapping[str, Any]] = {}
        for entry in vaults:
            name = entry.get("name") if isinstance(entry, Mapping) else None
            problem = _malformed(entry)
            if problem or not isinstance(name, str):
                await self._reject(str(name or "?"), "", problem or "no name")
                continue
            if name in wanted:
                await self._reject(name, str(entry["tenant"]), "listed twice; the first counts")
                continue
            wanted[name] = {**entry, "unseal": entry.get("unseal") or unseal}
        changed = False
        for name in sorted(set(self.opened) | set(self._locked) | set(self._sealed)):
            if name not in wanted:
                await self._remove(name)
                changed = True
        for name, entry in wanted.items():
            changed = await self._receive(name, entry, site) or changed
        self._start_fetch()
        return changed

    async def _receive(self, name: str, entry: Mapping[str, Any], site: str) -> bool:
        tenant, version, mode = str(entry["tenant"]), int(entry["version"]), str(entry["unseal"])
        current = self.opened.get(name)
        if current is not None and current.version == version and current.tenant == tenant:
            self._sealed.pop(name, None)
            if current.unseal != mode:
                await self._store(name, _Open(tenant, version, mode, current.secrets))
            return False
        if current is not None and version < current.version:
            log.warning("vault %s: version %d is older than %d", name, version, current.version)
            return False
        if mode == REMOTE and self._remote_key is None:
            self._sealed[name] = (entry, site)  # opened when the key arrives
            return False
        return await self._open_sealed(name, entry, site)

    async def _open_sealed(self, name: str, entry: Mapping[str, Any], site: str) -> bool:
        from enforcer.shared import sealing as vaults

        tenant, version, sealed = str(entry["tenant"]), int(entry["version"]), entry["sealed"]
        mode = str(entry["unseal"])
        try:
            if sealed.get("vault") != name or str(sealed.get("version")) != str(version):
                raise vaults.VaultError(f"vault {name}: the sealed copy is of another vault")
            contents = await asyncio.to_thread(
                lambda: vaults.unseal(sealed, self._site_key(), site=site)
            )
        except vaults.VaultError as exc:
            self._sealed.pop(name, None)
            await self._reject(name, tenant, str(exc))
            return False
        old = self.opened.get(name)
        await self._store(name, _Open(tenant, version, mode, contents))
        self._locked.pop(name, None)
        self._sealed.pop(name, None)
        if old is None:
            await self._event("vault.stored", f"vault {name} version {version} stored", tenant)
        else:
            message = f"vault {name} updated from version {old.version} to {version}"
            await self._event("vault.updated", message, tenant)
        return True

    async def _store(self, name: str, v: _Open) -> None:
        """Keep `v` open and store it encrypted under its mode's key (remote: when it comes)."""
        from enforcer.shared import sealing as vaults

        self.opened[name] = v
        key = self._local_key() if v.unseal != REMOTE else self._remote_key
        if key is None:
            self._restore.add(name)  # the stored copy stays as it is until then
            return
        blob = await asyncio.to_thread(vaults.encrypt_at_rest, v.secrets, key, vault=name)
        await self.store.put_vault(StoredVault(name, v.tenant, v.version, v.unseal, blob))
        self._restore.discard(name)

    async def _remove(self, name: str) -> None:
        opened = self.opened.pop(name, None)
        locked = self._locked.pop(name, None)
        sealed = self._sealed.pop(name, None)
        self._restore.discard(name)
        await self.store.delete_vault(name)
        tenant = opened.tenant if opened else locked.tenant if locked else ""
        if not tenant and sealed is not None:
            tenant = str(sealed[0].get("tenant", ""))
        message = f"vault {name} removed from this site (revoked or no longer distributed here)"
        await self._event("vault.removed", message, tenant)

    async def _reject(self, name: str, tenant: str, why: str) -> None:
        kept = self.opened.get(name)
        also = f"; version {kept.version} stays in use" if kept is not None else ""
        await self._event("vault.rejected", f"vault {name} refused: {why}{also}", tenant)

    async def _event(self, kind: str, message: str, tenant: str) -> None:
        await self._emit(kind, message, tenant=tenant)

    # -- keys ------------------------------------------------------------------------------
    async def set_remote_key(self, key: bytes) -> bool:
        """Control's vault key arrived: open what waited for it, store what must move to it."""
        async with self._lock:
            return await self._set_remote_key(key)

    async def _set_remote_key(self, key: bytes) -> bool:
        self._remote_key = key
        for name in sorted(self._restore):
            if name in self.opened:
                await self._store(name, self.opened[name])
        changed = await self._open_locked(REMOTE)
        for name, (entry, site) in list(self._sealed.items()):
            changed = await self._open_sealed(name, entry, site) or changed
        return changed

    async def _open_locked(self, mode: str) -> bool:
        from enforcer.shared import sealing as vaults

        try:
            key = self._local_key() if mode == LOCAL else self._remote_key
        except OSError as exc:
            log.error("stored vaults stay closed: %s", exc)
            return False
        if key is None:
            return False
        changed = False
        for name, stored in list(self._locked.items()):
            if stored.unseal != mode or name in self._sealed:
                continue  # another key, or a newer copy waits to be opened
            try:
                contents = await asyncio.to_thread(
                    vaults.decrypt_at_rest, stored.encrypted, key, vault=name
                )
            except vaults.VaultError as exc:
                log.error("%s; control must send it again", exc)
                continue
            self.opened[name] = _Open(stored.tenant, stored.version, stored.unseal, contents)
            del self._locked[name]
            changed = True
        return changed

    def _local_key(self) -> bytes:
        """The on-disk vault key, made (0600) the first time it is needed."""
        from enforcer.shared.sealing import new_vault_key

        try:
            key = _decode_key(self.key_path.read_text())
        except FileNotFoundError:
            self.key_path.parent.mkdir(parents=True, exist_ok=True)
            fresh = new_vault_key()
            try:
                fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return self._local_key()
            with os.fdopen(fd, "w") as out:
                out.write(base64.b64encode(fresh).decode() + "\n")
            return fresh
        if key is None:
            raise OSError(f"{self.key_path} does not hold a vault key")
        return key

    def _site_key(self) -> Any:
        from enforcer.shared import pki
        from enforcer.shared import sealing as vaults

        try:
            return pki.load_key(self.site_key_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise vaults.VaultError(
                f"the site's key {self.site_key_path} cannot be read ({type(exc).__name__})"
            ) from None

    def _start_fetch(self) -> None:
        needed = self._remote_key is None and (
            bool(self._sealed)
            or bool(self._restore)
            or any(v.unseal == REMOTE for v in self._locked.values())
        )
        if not needed or self._fetch is None:
            return
        if self._fetch_task is None or self._fetch_task.done():
            self._fetch_task = asyncio.create_task(self._fetch_loop(), name="vault-key")

    async def _fetch_loop(self) -> None:
        delay = 1.0
        while self._fetch is not None and self._remote_key is None:
            try:
                key = await self._fetch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # control down, refusing, or answering nonsense
                log.warning("vault key not fetched from control (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, FETCH_RETRY_MAX)
                continue
            await self.set_remote_key(key)
            log.info("vault key fetched from control")
            if self.on_key is not None:
                await self.on_key()


def _malformed(entry: object) -> str:
    """What is wrong with a desired-state vault entry ('' when nothing)."""
    if not isinstance(entry, Mapping):
        return "not an object"
    if not isinstance(entry.get("tenant"), str):
        return "no tenant"
    version = entry.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        return "no version"
    if not isinstance(entry.get("sealed"), Mapping):
        return "no sealed contents"
    if entry.get("unseal") not in (None, LOCAL, REMOTE):
        return 'unseal is neither "local" nor "remote"'
    return ""
