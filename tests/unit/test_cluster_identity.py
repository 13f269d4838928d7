"""The site's control identity in the site store: sealed to each host's own key, opened only
by that host, shared by a host that holds it with hosts that lack a copy (SQLite site store)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from enforcer.site.cluster.identity import (
    IDENTITY,
    IdentityError,
    SiteIdentityKeys,
    load_or_create_host_key,
    open_identity,
    public_pem,
    seal_identity,
)
from enforcer.site.kv.sqlite import SqliteKV

IDENT = {
    "site": "store-1",
    "url": "https://control.example:7443",
    "ca_fingerprint": "sha256:ab",
    "enrolled": "1700000000.5",
    "key": "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n",
    "cert": "cert",
    "ca": "ca",
}


def test_a_host_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "cluster" / "host-key.pem"
    key = load_or_create_host_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert public_pem(load_or_create_host_key(path)) == public_pem(key)


def test_a_sealed_copy_opens_with_its_hosts_key_only(tmp_path: Path) -> None:
    mine = load_or_create_host_key(tmp_path / "a.pem")
    other = load_or_create_host_key(tmp_path / "b.pem")
    sealed = seal_identity(IDENT, public_pem(mine))
    assert b"secret" not in sealed and b"store-1" not in sealed
    assert open_identity(sealed, mine) == IDENT
    with pytest.raises(IdentityError, match="does not open"):
        open_identity(sealed, other)
    with pytest.raises(IdentityError, match="does not open"):
        open_identity(b"{}", mine)


def test_a_holder_shares_the_identity_with_every_host_that_lacks_a_copy(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "site.db")
        try:
            keys = {
                h: SiteIdentityKeys(kv, h, load_or_create_host_key(tmp_path / f"{h}.pem"))
                for h in ("h1", "h2", "h3")
            }
            for k in keys.values():
                await k.publish_key()
            assert not await keys["h1"].enrolled()
            assert await keys["h2"].mine() is None
            assert await keys["h1"].share(IDENT) == ["h1", "h2", "h3"]
            assert await keys["h1"].enrolled()
            assert [await keys[h].mine() for h in keys] == [IDENT] * 3
            assert await keys["h2"].share(IDENT) == []  # every copy is there
            # h3 comes back with a new key (its state directory was lost): sealed for it again
            keys["h3"] = SiteIdentityKeys(kv, "h3", load_or_create_host_key(tmp_path / "n.pem"))
            await keys["h3"].publish_key()
            assert await keys["h3"].mine() is None
            assert await keys["h2"].share(IDENT) == ["h3"]
            assert await keys["h3"].mine() == IDENT
            entry = await kv.get(IDENTITY + "h3")
            assert entry is not None and b"store-1" not in entry.value
        finally:
            await kv.close()

    asyncio.run(main())
