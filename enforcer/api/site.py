"""The local API's routes for joining a multi-host site (`POST /v1/site/join-bundle` on a
controller, `POST /v1/site/join` on the host that joins); `Handlers` inherits them."""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from enforcer.api.errors import ApiError
from enforcer.api.tenants import current_view
from enforcer.shared.units import parse_duration
from enforcer.site.kv.base import KVError

__all__ = ["SiteHandlers", "SiteJoining"]

DEFAULT_EXPIRY = 3600.0


@runtime_checkable
class SiteJoining(Protocol):
    """What an enforcer that can join (or let others join) a multi-host site offers."""

    async def site_join_bundle(self, role: str, expires: float) -> dict[str, Any]: ...

    async def site_join(self, bundle: str, advertise: str) -> dict[str, Any]: ...

    async def site_leave(self) -> dict[str, Any]: ...


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported-media-type", f"{request.content_type}: send application/json"
        )
    try:
        document = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid-body", f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ApiError(400, "invalid-body", "the body is not a JSON object")
    return document


def _string(document: dict[str, Any], key: str, default: str = "") -> str:
    value = document.get(key, default)
    if not isinstance(value, str):
        raise ApiError(400, "invalid-body", f'"{key}" must be a string')
    return value.strip()


class SiteHandlers:
    enforcer: Any

    def _joining(self) -> SiteJoining:
        if current_view() is not None:
            raise ApiError(403, "forbidden", "a tenant's token may not change the site's hosts")
        if not isinstance(self.enforcer, SiteJoining):
            raise ApiError(409, "conflict", "this enforcer cannot join multi-host sites")
        return self.enforcer

    async def site_join_bundle(self, request: web.Request) -> web.Response:
        joining = self._joining()
        document = await _body(request)
        role = _string(document, "role", "controller")
        expires = _string(document, "expires", "1h")
        try:
            seconds = parse_duration(expires)
        except ValueError as exc:
            raise ApiError(400, "invalid-body", f"expires: {exc}") from None
        if seconds <= 0:
            raise ApiError(400, "invalid-body", f'expires: "{expires}" must be more than 0s')
        try:
            return web.json_response(await joining.site_join_bundle(role, seconds))
        except KVError as exc:
            raise ApiError(409, "conflict", str(exc)) from None

    async def site_join(self, request: web.Request) -> web.Response:
        joining = self._joining()
        document = await _body(request)
        bundle = _string(document, "bundle")
        if not bundle:
            raise ApiError(400, "invalid-body", 'the body needs "bundle": the join bundle')
        try:
            answer = await joining.site_join(bundle, _string(document, "advertise"))
        except KVError as exc:
            raise ApiError(422, "join-failed", str(exc)) from None
        return web.json_response(answer)

    async def site_leave(self, request: web.Request) -> web.Response:
        joining = self._joining()
        try:  # in no multi-host site: Conflict (409)
            answer = await joining.site_leave()
        except KVError as exc:
            raise ApiError(422, "leave-failed", str(exc)) from None
        return web.json_response(answer)
