"""An enforcer daemon run in this process, on a thread of its own, with its API on a socket.

Vaults only come from control, and the local API has no way in for them (DESIGN.md). To drive
the real path — unseal with the site key, store encrypted, secret files on a tmpfs, Docker —
without a control service, tests run `enforcer.daemon.Daemon` here and call `apply_vaults` and
`_control_desired` (what `enforcer.link.sync` calls) directly. Everything else goes through the CLI, as
with `EnforcerProc`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from enforcer.api.server import ApiServer, serve
from enforcer.api.tenants import load_tenant_tokens
from enforcer.config.load import load_config
from enforcer.daemon import Daemon
from enforcer.shared import pki
from enforcer.shared.sealing import seal
from tests.support.enforcer import EnforcerProc

T = TypeVar("T")
SITE = "test-site"  # the site name EnforcerProc's configuration gives


class LiveDaemon(EnforcerProc):
    """`EnforcerProc`'s CLI helpers over a daemon running in this process."""

    daemon: Daemon | None = None
    server: ApiServer | None = None
    site_key: ec.EllipticCurvePrivateKey | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _log: logging.Handler | None = None

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def start(self, timeout: float = 30, healthy: bool = False) -> None:
        if not self.config_path.exists():
            self.write_config()
        key_path = self.state_dir / "site" / "key.pem"
        if not key_path.exists():
            pki.write_file(key_path, pki.key_to_pem(pki.generate_key()), 0o600)
        self.site_key = pki.load_key(key_path.read_bytes())
        self._log = logging.FileHandler(self.log_path)
        self._log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._log.setLevel(logging.DEBUG)
        root = logging.getLogger()
        root.addHandler(self._log)
        root.setLevel(logging.DEBUG)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="enforcer", daemon=True)
        self._thread.start()
        config = load_config(self.config_path)
        self.daemon = Daemon(config)
        self.call(self.daemon.start(), timeout)
        self.server = self.call(
            serve(self.daemon, config.api.socket, tenant_tokens=load_tenant_tokens(config))
        )

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, sig: int = 0, timeout: float = 20) -> None:
        if self._loop is None:
            return
        if self.server is not None:
            self.call(self.server.close())
        if self.daemon is not None:
            self.call(self.daemon.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(timeout)
        self._loop.close()
        self._loop = None
        if self._log is not None:
            logging.getLogger().removeHandler(self._log)
            self._log.close()

    # -- what control would send ---------------------------------------------------------------
    def sealed(
        self, name: str, version: int, secrets: Mapping[str, Mapping[str, str]], tenant: str
    ) -> dict[str, Any]:
        assert self.site_key is not None
        box = seal(secrets, self.site_key.public_key(), site=SITE, vault=name, version=version)
        return {"name": name, "tenant": tenant, "version": version, "sealed": box}

    def apply_vaults(self, vaults: list[dict[str, Any]], unseal: str = "local") -> None:
        assert self.daemon is not None
        self.call(self.daemon.apply_vaults(vaults, unseal))

    def serve_vault_key(self, key: bytes) -> None:
        """Control answers GET /v1/sync/vault-key with `key` from now on (what
        `enforcer.secrets.vaults.fetch_vault_key` would return)."""
        assert self.daemon is not None
        vaults = self.daemon.vaults

        async def fetch() -> bytes:
            return key

        async def install() -> None:
            vaults.set_fetcher(fetch)

        self.call(install())

    def control_desired(
        self,
        revision: int,
        apps: list[dict[str, Any]],
        vaults: list[dict[str, Any]] | None = None,
        unseal: str = "local",
    ) -> None:
        """Control's desired state as sync hands it over: applications {name, tenant, spec}
        and, when given, the site's vaults."""
        assert self.daemon is not None
        if vaults is not None:  # as enforcer.link.sync hands them over: vaults first
            self.call(self.daemon.apply_vaults(vaults, unseal))
        self.call(self.daemon._control_desired(revision, apps))
