"""What every handler of control's API uses: the service, the caller, the request's body."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from control.fleet.access import Principal
from control.model import BadRequest, Invalid, Site
from control.service import ControlService

RETRY_AFTER = (1, 5)  # seconds, drawn uniformly per request turned away


class ApiContext:
    def __init__(
        self, service: ControlService, max_concurrent: int = 2048, metrics_public: bool = False
    ) -> None:
        self.service = service
        self.max_concurrent = max_concurrent
        self.metrics_public = metrics_public
        self.in_flight = 0  # sites' requests that cost work (see `working`) being served
        self.openapi: dict[str, Any] = {}  # the API's document, made from its route table

    def overloaded(self) -> web.Response | None:
        """A 503 with ``Retry-After`` (spread over a few seconds, so that sites turned away
        together do not come back together) when `max_concurrent` requests are at work."""
        if self.in_flight < self.max_concurrent:
            return None
        self.service.metrics.inc("http_shed_total")
        response = error_response(503, "overloaded", "control is busy; retry later")
        response.headers["Retry-After"] = str(random.randint(*RETRY_AFTER))
        return response

    @contextmanager
    def working(self) -> Iterator[None]:
        """Count a request that costs work (a status batch, an enrollment, a desired state
        to build) while it is served."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def principal(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if header and scheme.lower() != "bearer":
            token = ""
        return await self.service.tenants.authenticate(token.strip() or None)

    def site(self, request: web.Request) -> Site:
        """The site whose verified client certificate made the request."""
        transport = request.transport
        peercert = transport.get_extra_info("peercert") if transport is not None else None
        return self.service.sites.for_certificate(peercert)


async def read_json(request: web.Request) -> Any:
    """The request's JSON body (None when empty); 400 naming what is wrong otherwise."""
    raw = await request.read()
    if not raw:
        return None
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise Invalid(f"the request body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise BadRequest("the request body is nested too deeply") from e
    try:
        # a lone surrogate (\ud800) parses, but is not text: refuse it before it reaches the store
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError as e:
        raise BadRequest(
            "the request body holds a lone UTF-16 surrogate escape, which is not text"
        ) from e
    return body


async def read_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise Invalid("the request body must be a JSON object")
    return body


def text_field(body: dict[str, Any], key: str, default: str | None = None) -> str:
    """`body[key]` as a string; 422 naming the field when it is missing or not a string."""
    value = body.get(key, default)
    if value is None:
        raise Invalid(f"{key} is required", [(key, "is required")])
    if not isinstance(value, str):
        raise Invalid(f"{key} must be a string", [(key, f"{type(value).__name__} is not a string")])
    return value


def optional_text(body: dict[str, Any], key: str) -> str | None:
    return None if body.get(key) is None else text_field(body, key)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return json_response({"error": {"code": code, "message": message, **extra}}, status)


def int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise Invalid(f"query parameter {name}={raw[:40]!r} is not an integer") from e
    if not low <= value <= high:
        raise Invalid(f"query parameter {name}={raw[:40]} is out of range {low}..{high}")
    return value
