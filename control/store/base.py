"""What control keeps, as interfaces: one part per kind of record, composed into a `Store`.

Every method is atomic (one transaction). SQLite implements these (`control.store.sqlite`);
a PostgreSQL backend implements the same parts.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Any

from control.model import AppVersion, Deployment, Site, StatusResult, Tenant
from control.vaults.envelope import Vault

# the one answer to an enrollment with an unknown site or secret: names cannot be probed
UNKNOWN_SECRET = (
    "the enrollment bundle is not valid: control does not know its secret "
    "(issue a new one with `edge-control site token`)"
)


class TenantRecords(abc.ABC):
    @abc.abstractmethod
    async def create(
        self, name: str, parent: str, now: float, quota: dict[str, float] | None = None
    ) -> Tenant: ...
    @abc.abstractmethod
    async def load(self) -> list[Tenant]: ...
    @abc.abstractmethod
    async def add_token(
        self, token_hash: str, tenant: str, description: str, now: float
    ) -> None: ...
    @abc.abstractmethod
    async def token_tenant(self, token_hash: str) -> str | None: ...


class SiteRecords(abc.ABC):
    @abc.abstractmethod
    async def create_enrollment(
        self, secret_hash: str, site: Site, expires: float, now: float
    ) -> None: ...
    @abc.abstractmethod
    async def check_enrollment(self, secret_hash: str, site: str, now: float) -> None:
        """Forbidden unless `secret_hash` is an unused, unexpired secret of `site`."""

    @abc.abstractmethod
    async def consume_enrollment(
        self, secret_hash: str, site: str, serial: str, now: float, public_key: str = ""
    ) -> None: ...
    @abc.abstractmethod
    async def load(self) -> list[Site]: ...
    @abc.abstractmethod
    async def save(self, site: Site) -> None: ...
    @abc.abstractmethod
    async def save_revisions(self, changes: Sequence[tuple[str, int, str]]) -> None: ...
    @abc.abstractmethod
    async def save_contacts(self, contacts: Iterable[tuple[str, float]]) -> None: ...
    @abc.abstractmethod
    async def apply_status(
        self, site: Site, seq: int, events: Sequence[Any], now: float
    ) -> StatusResult: ...
    @abc.abstractmethod
    async def events(self, site: str, limit: int) -> list[dict[str, Any]]: ...


class AppRecords(abc.ABC):
    @abc.abstractmethod
    async def put_version(self, app: AppVersion, keep: int, protected: set[str]) -> bool: ...
    @abc.abstractmethod
    async def versions(self, name: str | None = None) -> list[AppVersion]: ...


class DeploymentRecords(abc.ABC):
    @abc.abstractmethod
    async def put(self, deployment: Deployment) -> None: ...
    @abc.abstractmethod
    async def load(self) -> list[Deployment]: ...
    @abc.abstractmethod
    async def delete(self, name: str) -> None: ...
    @abc.abstractmethod
    async def save_rollouts(
        self, rollouts: Sequence[tuple[str, dict[str, Any] | None]]
    ) -> None: ...


class VaultRecords(abc.ABC):
    @abc.abstractmethod
    async def meta(self, key: str) -> bytes | None: ...
    @abc.abstractmethod
    async def set_meta_once(self, key: str, value: bytes) -> bytes: ...
    @abc.abstractmethod
    async def load(self) -> list[Vault]: ...
    @abc.abstractmethod
    async def put(self, vault: Vault, previous_version: int | None) -> None: ...
    @abc.abstractmethod
    async def delete(self, name: str) -> None: ...
    @abc.abstractmethod
    async def site_key(self, site: str, wrapped: bytes, now: float) -> bytes: ...


class Store(abc.ABC):
    """The store: opened once, then used through its parts."""

    tenants: TenantRecords
    sites: SiteRecords
    apps: AppRecords
    deployments: DeploymentRecords
    vaults: VaultRecords

    @abc.abstractmethod
    async def open(self) -> None: ...
    @abc.abstractmethod
    async def close(self) -> None: ...
