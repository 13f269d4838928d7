"""Tenant tokens on the local API: what one tenant's bearer token sees of the enforcer.

`TenantView` wraps an `Enforcer` and shows only the records whose ``tenant`` is the token's
tenant: applications, instances, their logs and events. Anything else answers exactly like
something that does not exist (NotFound, "... does not exist"), so a tenant cannot even learn
that another tenant's application is there. Applying site-local applications (they belong to
the site's ``system`` tenant) and reading the site's metrics need the admin token or the socket
without a token (`Forbidden`).

Tokens come from ``[api] tenant-tokens = { acme = "@/path/to/file" }`` (or the token itself)
and from files ``<state-dir>/tenant-tokens/<tenant>``; `load_tenant_tokens` reads them.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from enforcer.config.model import EnforcerConfig
from enforcer.facade import AppRecord, Enforcer, Event, Forbidden, InstanceStatus, NotFound

__all__ = ["TOKENS_DIR", "TenantView", "auth_middleware", "current_view", "load_tenant_tokens"]

log = logging.getLogger(__name__)

TOKENS_DIR = "tenant-tokens"
_TENANT = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="edgeward"'}
# the enforcer as the current request's token sees it (a tenant's view; None: all of it)
_VIEW: contextvars.ContextVar[Enforcer | None] = contextvars.ContextVar("view", default=None)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def current_view() -> Enforcer | None:
    """The tenant's view of the enforcer for the request being handled (None: the admin's)."""
    return _VIEW.get()


def auth_middleware(
    enforcer: Enforcer, token: str | None, tenant_tokens: Mapping[str, str], required: bool
) -> Any:
    """Admin `token` or a tenant's token (token -> tenant) as a bearer token; `required`: a
    request without one is refused (TCP), else it is the site admin's (the unix socket)."""
    admin = token.encode("utf-8") if token is not None else None
    tenants = [(t.encode("utf-8"), tenant) for t, tenant in tenant_tokens.items()]

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            if not required:
                return await handler(request)
            raise web.HTTPUnauthorized(
                text="missing bearer token (Authorization: Bearer ...)", headers=_CHALLENGE
            )
        offered = given.strip().encode("utf-8")
        if admin is not None and hmac.compare_digest(offered, admin):
            return await handler(request)
        tenant = None
        for known, name in tenants:  # every token compared: the time says nothing
            if hmac.compare_digest(offered, known):
                tenant = name
        if tenant is None:
            raise web.HTTPUnauthorized(text="wrong bearer token", headers=_CHALLENGE)
        view = _VIEW.set(TenantView(enforcer, tenant))
        try:
            return await handler(request)
        finally:
            _VIEW.reset(view)

    return auth


class TenantView:
    """`enforcer` as seen with `tenant`'s token (see the module documentation)."""

    def __init__(self, enforcer: Enforcer, tenant: str) -> None:
        self.enforcer = enforcer
        self.tenant = tenant

    def _own_app(self, name: str) -> AppRecord:
        try:
            record = self.enforcer.application(name)
        except NotFound:
            record = None
        if record is None or record.tenant != self.tenant:
            raise NotFound(f"application {name} does not exist")
        return record

    def _own_instance(self, instance: str) -> InstanceStatus:
        for status in self.enforcer.instances():
            if status.id == instance and status.tenant == self.tenant:
                return status
        raise NotFound(f"instance {instance} does not exist")

    async def apply(self, document: Mapping[str, Any]) -> tuple[AppRecord, bool]:
        raise Forbidden(
            "a tenant token cannot apply site-local applications (they belong to the site); "
            "deploy through control"
        )

    async def remove(self, name: str, purge: bool = False) -> None:
        self._own_app(name)
        await self.enforcer.remove(name, purge)

    def applications(self) -> list[AppRecord]:
        return [r for r in self.enforcer.applications() if r.tenant == self.tenant]

    def application(self, name: str) -> AppRecord:
        return self._own_app(name)

    def instances(self) -> list[InstanceStatus]:
        return [i for i in self.enforcer.instances() if i.tenant == self.tenant]

    def logs(
        self, instance: str, container: str | None, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        return self._logs(instance, container, tail, follow)

    async def _logs(
        self, instance: str, container: str | None, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        self._own_instance(instance)
        async for chunk in self.enforcer.logs(instance, container, tail, follow):
            yield chunk

    def events(self, since: int, follow: bool) -> AsyncIterator[Event]:
        return self._events(since, follow)

    async def _events(self, since: int, follow: bool) -> AsyncIterator[Event]:
        async for event in self.enforcer.events(since, follow):
            if self._sees(event):
                yield event

    def _sees(self, event: Event) -> bool:
        if event.tenant:
            return event.tenant == self.tenant
        if not event.app:
            return False  # the site's own events (runtime, enforcer, control link)
        return any(r.name == event.app for r in self.applications())

    def host(self) -> dict[str, Any]:
        return self.enforcer.host()

    async def site(self) -> dict[str, Any]:
        return await self.enforcer.site()

    async def health(self) -> dict[str, Any]:
        return await self.enforcer.health()

    def metrics(self) -> str:
        raise Forbidden("a tenant token cannot read the site's metrics")

    async def enroll(self, bundle: str) -> dict[str, Any]:
        raise Forbidden("a tenant token cannot enroll the site with control")


def load_tenant_tokens(config: EnforcerConfig) -> dict[str, str]:
    """token -> tenant, from the config and ``<state-dir>/tenant-tokens/<tenant>`` files.

    A token that cannot be read is left out with an error in the log (the API still starts);
    a token given to two tenants is left out for both."""
    sources: list[tuple[str, str]] = list(config.api.tenant_tokens.items())
    directory = config.state_dir / TOKENS_DIR
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if _TENANT.fullmatch(path.name) and path.is_file():
                sources.append((path.name, f"@{path}"))
    tokens: dict[str, str] = {}
    clashes: set[str] = set()
    for tenant, given in sources:
        token = _read(tenant, given)
        if not token:
            continue
        if tokens.get(token, tenant) != tenant:
            clashes.add(token)
        tokens[token] = tenant
    for token in clashes:
        log.error("a tenant token is given to several tenants; it is refused for all of them")
        del tokens[token]
    return tokens


def _read(tenant: str, given: str) -> str:
    if not given.startswith("@"):
        return given.strip()
    path = Path(given[1:])
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        log.error("tenant %s: cannot read its token from %s: %s", tenant, path, exc)
        return ""
    if not token:
        log.error("tenant %s: the token file %s is empty", tenant, path)
    return token
