"""The handlers of the local API's routes (`enforcer.api.routes` names them by method name)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from enforcer.api.documents import DocumentError, format_for_media_type, parse_document
from enforcer.api.errors import ApiError
from enforcer.api.metrics import CONTENT_TYPE as METRICS_TYPE
from enforcer.api.openapi import openapi_document
from enforcer.api.site import SiteHandlers
from enforcer.api.streams import stream_response
from enforcer.api.tenants import current_view
from enforcer.facade import Enforcer, NotFound
from enforcer.shared.spec.validate import validate_application

__all__ = ["Handlers", "dumps"]


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def _bool_param(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ApiError(400, "invalid-parameter", f'{name}: "{value}" is not true or false')


def _int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ApiError(400, "invalid-parameter", f'{name}: "{value}" is not a whole number >= 0')
    return int(value)


class Handlers(SiteHandlers):  # the site's join routes: enforcer.api.site
    def __init__(self, enforcer: Enforcer, max_body: int) -> None:
        self.enforcer = enforcer  # all of it: see view
        self.max_body = max_body
        self.stopping = asyncio.Event()
        self.openapi_body = json.dumps(openapi_document()).encode("utf-8")

    async def on_shutdown(self, app: web.Application) -> None:
        self.stopping.set()  # ends streams that follow

    @property
    def view(self) -> Enforcer:
        """The enforcer as this request's token sees it."""
        return current_view() or self.enforcer

    async def health(self, request: web.Request) -> web.Response:
        health = await self.view.health()
        return _json(health, 200 if health.get("healthy") else 503)

    async def host(self, request: web.Request) -> web.Response:
        return _json(self.view.host())

    async def site(self, request: web.Request) -> web.Response:
        return _json(await self.view.site())

    async def applications(self, request: web.Request) -> web.Response:
        return _json({"applications": [r.to_json() for r in self.view.applications()]})

    async def application(self, request: web.Request) -> web.Response:
        return _json(self.view.application(request.match_info["name"]).to_json())

    async def apply(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        fmt = format_for_media_type(request.content_type)
        if fmt is None:
            raise ApiError(
                415,
                "unsupported-media-type",
                f"{request.content_type}: send the spec as application/json or application/yaml",
            )
        body = await self._read_body(request)
        try:
            document = parse_document(body, fmt)
        except DocumentError as exc:
            raise ApiError(400, "invalid-body", str(exc)) from None
        spec_name = document.get("name")
        if spec_name != name:
            got = f'"{spec_name}"' if isinstance(spec_name, str) else "no name"
            message = f'the spec has {got} but the path names "{name}"'
            if not isinstance(spec_name, str):  # the name's path with every other problem
                message += "".join(f"\n{e}" for e in validate_application(document)[1])
            raise ApiError(400, "name-mismatch", message)
        try:
            self.view.application(name)
            existed = True
        except NotFound:
            existed = False
        record, changed = await self.view.apply(document)
        return _json({**record.to_json(), "changed": changed}, 200 if existed else 201)

    async def _read_body(self, request: web.Request) -> bytes:
        too_large = ApiError(
            413, "body-too-large", f"the body is larger than {self.max_body} bytes"
        )
        if request.content_length is not None and request.content_length > self.max_body:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self.max_body:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def remove(self, request: web.Request) -> web.Response:
        purge = _bool_param(request, "purge")
        await self.view.remove(request.match_info["name"], purge)
        return web.Response(status=204)

    async def instances(self, request: web.Request) -> web.Response:
        return _json({"instances": [i.to_json() for i in self.view.instances()]})

    async def logs(self, request: web.Request) -> web.StreamResponse:
        container = request.query.get("container") or None
        tail = _int_param(request, "tail")
        follow = _bool_param(request, "follow")
        chunks = self.view.logs(request.match_info["id"], container, tail, follow)
        return await stream_response(
            request, chunks, "text/plain; charset=utf-8", lambda b: b, self.stopping
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        since = _int_param(request, "since") or 0
        follow = _bool_param(request, "follow")
        return await stream_response(
            request,
            self.view.events(since, follow),
            "application/x-ndjson",
            lambda e: (dumps(e.to_json()) + "\n").encode("utf-8"),
            self.stopping,
        )

    async def metrics(self, request: web.Request) -> web.Response:
        body = self.view.metrics().encode("utf-8")
        return web.Response(body=body, headers={"Content-Type": METRICS_TYPE})

    async def enroll(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            raise ApiError(
                415,
                "unsupported-media-type",
                f'{request.content_type}: send {{"bundle": "..."}} as application/json',
            )
        try:
            document = json.loads(await self._read_body(request))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "invalid-body", f"the body is not JSON: {exc}") from None
        bundle = document.get("bundle") if isinstance(document, dict) else None
        if not isinstance(bundle, str) or not bundle.strip():
            raise ApiError(400, "invalid-body", 'the body needs "bundle": the enrollment bundle')
        from enforcer.link.enrollment import EnrollmentError

        try:
            return _json(await self.view.enroll(bundle.strip()))
        except EnrollmentError as exc:
            raise ApiError(422, "enrollment-failed", f"enrollment failed: {exc}") from None

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self.openapi_body, content_type="application/json")
