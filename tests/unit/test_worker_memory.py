"""What a worker enforcer loads at start (issue 11: a worker under 60 MB): no cryptography
until something is signed, sealed or opened; the host key is made only when first needed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from enforcer.shared import pki
from enforcer.shared.lazy import lazy
from enforcer.site.cluster.identity import (
    IDENTITY,
    SiteIdentityKeys,
    load_or_create_host_key,
    public_pem,
    seal_identity,
)
from enforcer.site.kv.sqlite import SqliteKV

IDENT = {
    "site": "store-1",
    "url": "https://control.example:7443",
    "ca_fingerprint": "sha256:ab",
    "enrolled": "1",
    "key": "k",
    "cert": "c",
    "ca": "a",
}


def test_starting_an_enforcer_imports_no_cryptography() -> None:
    code = (
        "import sys, enforcer.cli.main, enforcer.daemon, enforcer.site.etcd.certs, "
        "enforcer.site.cluster.joinclient\n"
        "print(sorted(m for m in sys.modules if m.startswith('cryptography')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_lazy_module_is_the_module_once_used() -> None:
    ec = lazy("cryptography.hazmat.primitives.asymmetric.ec")
    key = pki.generate_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert pki.PrivateKey is ec.EllipticCurvePrivateKey  # the alias, at run time too
    assert pki.load_key(pki.key_to_pem(key)).private_numbers() == key.private_numbers()


def test_the_host_key_is_made_only_when_a_copy_is_opened_or_published(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "site.db")
        path = tmp_path / "cluster" / "host-key.pem"
        try:
            keys = SiteIdentityKeys.at(kv, "h1", path)
            assert await keys.mine() is None and not await keys.enrolled()
            assert not path.exists()  # nothing to open: no key made, no cryptography needed
            await keys.publish_key()
            assert path.stat().st_mode & 0o777 == 0o600
            assert keys.public == public_pem(load_or_create_host_key(path))
            await kv.put(IDENTITY + "h1", seal_identity(IDENT, keys.public))
            assert await SiteIdentityKeys.at(kv, "h1", path).mine() == IDENT  # read back
        finally:
            await kv.close()

    asyncio.run(main())
