"""The site's vault store: opening, storing encrypted, rotation, revocation, tampering, keys."""

from __future__ import annotations

import asyncio
import base64
import functools
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from enforcer.secrets.files import SecretFiles
from enforcer.secrets.vaults import (
    WAITING_FOR_KEY,
    SiteVaults,
    instance_secrets,
    missing_secret,
)
from enforcer.shared import pki
from enforcer.shared.sealing import new_vault_key, seal
from enforcer.shared.spec import parse_application
from enforcer.site.store import Store

SITE = "store-1"
VALUE = "hunter2-very-secret"


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout=30))

    return run


class Site:
    """A state directory with a site key, a store and the vaults over it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.key = pki.generate_key()
        pki.write_file(root / "site" / "key.pem", pki.key_to_pem(self.key), 0o600)
        self.store = Store(root / "enforcer.db")
        self.events: list[tuple[str, str, str]] = []
        self.vaults = self.new_vaults()

    def new_vaults(self) -> SiteVaults:
        return SiteVaults(self.store, self.root, emit=self.emit)

    async def emit(self, kind: str, message: str, **fields: Any) -> None:
        self.events.append((kind, message, fields.get("tenant", "")))

    def entry(
        self,
        name: str,
        version: int,
        secrets: dict[str, dict[str, str]],
        *,
        tenant: str = "acme",
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> dict[str, Any]:
        public = (key or self.key).public_key()
        sealed = seal(secrets, public, site=SITE, vault=name, version=version)
        return {"name": name, "tenant": tenant, "version": version, "sealed": sealed}

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.events]


@pytest.fixture()
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def service(doc_volumes: list[dict[str, Any]] | None = None, variables: Any = None) -> Any:
    svc: dict[str, Any] = {"name": "web", "containers": [{"name": "main", "image": "busybox"}]}
    if doc_volumes:
        svc["volumes"] = doc_volumes
    if variables:
        svc["variables"] = variables
    return parse_application({"name": "app", "version": "1", "services": [svc]}).services[0]


CREDS_VOLUME = [{"name": "creds", "secret": {"vault": "vision", "secret": "creds"}}]


@async_test
async def test_a_received_vault_is_opened_stored_encrypted_and_used(site: Site) -> None:
    await site.store.open()
    await site.vaults.load()
    changed = await site.vaults.apply(
        [site.entry("vision", 1, {"creds": {"api-key": VALUE}})], "local", site=SITE
    )
    assert changed
    assert site.vaults.values_for("acme") == {("vision", "creds", "api-key"): VALUE}
    assert site.kinds() == ["vault.stored"]
    key_file = site.root / "site" / "vault.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = await site.store.vaults()
    assert [(v.name, v.tenant, v.version) for v in stored] == [("vision", "acme", 1)]
    key_before = key_file.read_bytes()
    await site.store.close()
    for path in site.root.glob("enforcer.db*"):
        assert VALUE.encode() not in path.read_bytes()
    assert all(VALUE not in message for _, message, _ in site.events)

    # a restart opens the stored copy with the same key, without control
    again = site.new_vaults()
    await site.store.open()
    await again.load()
    assert again.values_for("acme") == {("vision", "creds", "api-key"): VALUE}
    assert key_file.read_bytes() == key_before  # made once
    await site.store.close()


@async_test
async def test_the_latest_version_wins_and_an_older_one_is_ignored(site: Site) -> None:
    await site.store.open()
    await site.vaults.apply([site.entry("vision", 1, {"s": {"k": "one"}})], "local", site=SITE)
    assert await site.vaults.apply(
        [site.entry("vision", 2, {"s": {"k": "two"}})], "local", site=SITE
    )
    assert site.vaults.values_for("acme") == {("vision", "s", "k"): "two"}
    assert site.events[-1][:2] == ("vault.updated", "vault vision updated from version 1 to 2")
    # the same version again changes nothing; an older one is not taken back
    assert not await site.vaults.apply(
        [site.entry("vision", 2, {"s": {"k": "two"}})], "local", site=SITE
    )
    assert not await site.vaults.apply(
        [site.entry("vision", 1, {"s": {"k": "one"}})], "local", site=SITE
    )
    assert site.vaults.values_for("acme") == {("vision", "s", "k"): "two"}
    await site.store.close()


@async_test
async def test_a_tampered_vault_is_refused_and_the_stored_version_stays(site: Site) -> None:
    await site.store.open()
    await site.vaults.apply([site.entry("vision", 1, {"s": {"k": VALUE}})], "local", site=SITE)
    bad = site.entry("vision", 2, {"s": {"k": "new"}})
    raw = bytearray(base64.b64decode(bad["sealed"]["ciphertext"]))
    raw[3] ^= 0x40
    bad["sealed"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    other_site = site.entry("other", 1, {"s": {"k": "x"}}, key=pki.generate_key())
    swapped = site.entry("vision", 3, {"s": {"k": "y"}})
    swapped["name"] = "stolen"  # a copy of vision passed off as another vault
    assert not await site.vaults.apply([bad, other_site, swapped], "local", site=SITE)
    assert site.vaults.values_for("acme") == {("vision", "s", "k"): VALUE}
    rejected = [(m, t) for kind, m, t in site.events if kind == "vault.rejected"]
    assert len(rejected) == 3
    assert rejected[0][0].startswith("vault vision refused: vault vision version 2: does not open")
    assert rejected[0][0].endswith("; version 1 stays in use")
    assert rejected[0][1] == "acme"
    assert rejected[1][0].startswith("vault other refused")
    assert rejected[2][0].startswith("vault stolen refused")
    assert all(VALUE not in m and "new" not in m for m, _ in rejected)
    assert [v.version for v in await site.store.vaults()] == [1]
    await site.store.close()


@async_test
async def test_a_malformed_entry_is_refused_without_disturbing_the_others(site: Site) -> None:
    await site.store.open()
    good = site.entry("vision", 1, {"s": {"k": "v"}})
    await site.vaults.apply(
        [
            {"name": "x", "tenant": "acme", "version": "1", "sealed": {}},
            {"name": "y", "tenant": "acme", "version": 1, "sealed": {}, "unseal": "maybe"},
            "junk",  # type: ignore[list-item]
            good,
        ],
        "local",
        site=SITE,
    )
    assert site.vaults.values_for("acme") == {("vision", "s", "k"): "v"}
    messages = [m for kind, m, _ in site.events if kind == "vault.rejected"]
    assert messages == [
        "vault x refused: no version",
        'vault y refused: unseal is neither "local" nor "remote"',
        "vault ? refused: not an object",
    ]
    await site.store.close()


@async_test
async def test_a_vault_that_leaves_the_desired_state_is_deleted(site: Site) -> None:
    await site.store.open()
    await site.vaults.apply(
        [site.entry("a", 1, {"s": {"k": "1"}}), site.entry("b", 1, {"s": {"k": "2"}})],
        "local",
        site=SITE,
    )
    assert await site.vaults.apply([site.entry("b", 1, {"s": {"k": "2"}})], "local", site=SITE)
    assert site.vaults.values_for("acme") == {("b", "s", "k"): "2"}
    assert [v.name for v in await site.store.vaults()] == ["b"]
    assert ("vault.removed", "acme") in [(k, t) for k, _, t in site.events]
    await site.store.close()


@async_test
async def test_tenants_and_site_local_apps_use_only_their_own_vaults(site: Site) -> None:
    await site.store.open()
    await site.vaults.apply(
        [site.entry("vision", 1, {"creds": {"api-key": VALUE}}, tenant="acme")],
        "local",
        site=SITE,
    )
    svc = service(CREDS_VOLUME)
    assert missing_secret("acme", svc, site.vaults) == ""
    # another tenant, and the site's own applications, are told the same as when the vault
    # is not here at all
    for other in ("globex", "system"):
        assert missing_secret(other, svc, site.vaults) == (
            "secret vision/creds not available at this site"
        )
        assert site.vaults.values_for(other) == {}
    variable = [
        {"name": "K", "value-from-secret": {"vault": "vision", "secret": "creds", "key": "x"}}
    ]
    assert missing_secret("acme", service(variables=variable), site.vaults) == (
        "secret vision/creds not available at this site"
    )
    broken = SecretFiles(site.root / "secrets")
    broken.prepared, broken.error = True, "no tmpfs"
    assert instance_secrets("acme", svc, site.vaults, broken) == (
        "secret volumes unavailable: no tmpfs",
        None,
    )
    assert instance_secrets("acme", service(), site.vaults, broken) == ("", None)
    await site.store.close()


@async_test
async def test_remote_unseal_waits_for_the_key_and_keeps_none_on_disk(site: Site) -> None:
    await site.store.open()
    await site.vaults.load()
    await site.vaults.apply([site.entry("vision", 1, {"creds": {"k": VALUE}})], "remote", site=SITE)
    svc = service(CREDS_VOLUME)
    assert missing_secret("acme", svc, site.vaults) == WAITING_FOR_KEY
    assert await site.store.vaults() == []  # nothing stored without a key

    remote_key = new_vault_key()
    arrived = asyncio.Event()

    async def fetch() -> bytes:
        return remote_key

    async def on_key() -> None:
        arrived.set()

    site.vaults.on_key = on_key
    site.vaults.set_fetcher(fetch)
    await arrived.wait()
    assert missing_secret("acme", svc, site.vaults) == ""
    assert not (site.root / "site" / "vault.key").exists()
    await site.vaults.close()
    await site.store.close()

    # after a restart the stored copy waits for control's key again
    await site.store.open()
    again = site.new_vaults()
    await again.load()
    assert missing_secret("acme", svc, again) == WAITING_FOR_KEY
    attempts = 0

    async def flaky() -> bytes:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise OSError("control is down")
        return remote_key

    arrived.clear()
    again.on_key = on_key
    again.set_fetcher(flaky)
    await asyncio.wait_for(arrived.wait(), 5)
    assert again.values_for("acme") == {("vision", "creds", "k"): VALUE}
    await again.close()
    await site.store.close()


@async_test
async def test_each_vault_is_kept_under_the_key_its_unseal_mode_names(site: Site) -> None:
    await site.store.open()
    remote_key = new_vault_key()
    local = {**site.entry("here", 1, {"s": {"k": "1"}}), "unseal": "local"}
    remote = {**site.entry("there", 1, {"s": {"k": "2"}}), "unseal": "remote"}
    await site.vaults.apply([local, remote], site=SITE)
    assert site.vaults.values_for("acme") == {("here", "s", "k"): "1"}
    assert site.vaults.waiting == {"there": "acme"}
    await site.vaults.set_remote_key(remote_key)
    assert set(site.vaults.values_for("acme")) == {("here", "s", "k"), ("there", "s", "k")}
    assert {v.name: v.unseal for v in await site.store.vaults()} == {
        "here": "local",
        "there": "remote",
    }

    # a restart without control: the local vault opens at once, the remote one waits
    again = site.new_vaults()
    await again.load()
    assert again.values_for("acme") == {("here", "s", "k"): "1"}
    assert again.waiting == {"there": "acme"}

    # the same version moving from local to remote unseal is stored again under control's
    # key once that is here; until then the local copy stays
    moved = {**local, "unseal": "remote"}
    assert not await again.apply([moved, remote], site=SITE)
    assert again.values_for("acme") == {("here", "s", "k"): "1"}
    assert {v.name: v.unseal for v in await site.store.vaults()}["here"] == "local"
    await again.set_remote_key(remote_key)
    assert {v.name: v.unseal for v in await site.store.vaults()} == {
        "here": "remote",
        "there": "remote",
    }
    third = site.new_vaults()
    await third.load()
    assert third.values_for("acme") == {}  # nothing opens without control's key now
    await third.set_remote_key(remote_key)
    assert set(third.values_for("acme")) == {("here", "s", "k"), ("there", "s", "k")}
    await site.store.close()
