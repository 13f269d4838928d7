"""Who calls control's operator API: bearer tokens and the tenant they act for."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from control.model import SYSTEM_TENANT, Forbidden, NotFound


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "ewt_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who calls: a token's tenant and the tenants it may see (itself and its sub-tenants)."""

    tenant: str
    visible: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.tenant == SYSTEM_TENANT

    def require_admin(self, what: str) -> None:
        if not self.is_admin:
            raise Forbidden(f"only the {SYSTEM_TENANT} tenant may {what}")

    def require_visible(self, tenant: str, what: str) -> None:
        if tenant not in self.visible:
            raise NotFound(f"{what} does not exist")
