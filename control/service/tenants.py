"""Tenants and their bearer tokens: who calls control's operator API."""

from __future__ import annotations

from typing import Any

from control.fleet.access import Principal, new_token, token_hash
from control.fleet.quota import check_quota_document
from control.model import SYSTEM_TENANT, Conflict, Tenant, Unauthorized, check_name
from control.service.core import Core


class Tenants:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def load(self) -> None:
        tenants = await self.core.store.tenants.load()
        self.core.fleet.tenants = {t.name: t for t in tenants}

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("a bearer token is required (--token or EDGEWARD_TOKEN)")
        tenant = await self.core.store.tenants.token_tenant(token_hash(token))
        if tenant is None:
            raise Unauthorized("the token is not valid")
        return Principal(tenant, frozenset(self.core.fleet.subtree(tenant)))

    async def create(
        self, who: Principal, name: str, parent: str | None, quota: Any = None
    ) -> Tenant:
        check_name(name, "tenant")
        parent = parent or who.tenant
        who.require_visible(parent, f"tenant {parent!r}")
        limits = check_quota_document(quota)
        tenants = self.core.fleet.tenants
        if name in tenants:
            raise Conflict(f"tenant {name!r} already exists")
        tenant = await self.core.store.tenants.create(name, parent, self.core.clock(), limits)
        tenants[name] = tenant
        return tenant

    def visible(self, who: Principal) -> list[Tenant]:
        return [t for name, t in sorted(self.core.fleet.tenants.items()) if name in who.visible]

    async def create_token(self, who: Principal, tenant: str, description: str = "") -> str:
        who.require_visible(tenant, f"tenant {tenant!r}")
        token = new_token()
        await self.core.store.tenants.add_token(
            token_hash(token), tenant, description, self.core.clock()
        )
        return token

    async def add_admin_token(self, token: str) -> None:
        await self.core.store.tenants.add_token(
            token_hash(token), SYSTEM_TENANT, "admin-token", self.core.clock()
        )
