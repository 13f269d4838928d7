"""Control's HTTP API (aiohttp): operators with bearer tokens, sites with mutual TLS.

The routes come from the route table (`control.api.table`). Errors are
``{"error": {"code": ..., "message": ...}}``; an unexpected one is a 500 with a generic message
and the detail in the log. Bodies are limited by ``client_max_size``; past `max_concurrent`
sites' requests that cost work in progress (the routes marked `shed` in the table, and
long-polls to be answered at once), control answers more of them with 503 and ``Retry-After``,
spread over a few seconds so that sites do not come back all at once. Operators are never
turned away.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from control import console
from control.api.context import ApiContext, error_response
from control.api.openapi import openapi_document
from control.api.table import ROUTES
from control.model import ControlError, Invalid
from control.service import ControlService

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlAPI(ApiContext):
    def __init__(
        self, service: ControlService, max_concurrent: int = 2048, metrics_public: bool = False
    ) -> None:
        super().__init__(service, max_concurrent, metrics_public)
        self.openapi = openapi_document()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors])
        app.on_response_prepare.append(_server_header)
        for route in ROUTES:
            handler: Handler = partial(route.handler, self)
            if route.shed:
                handler = partial(self._shedding, handler)
            app.router.add_route(route.method, route.path, handler)
        console.add_routes(app)  # the web console at /ui/: static files, not API
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ControlError as e:
            extra: dict[str, Any] = dict(e.details)
            if isinstance(e, Invalid) and e.errors:
                extra["errors"] = [{"path": p, "message": m} for p, m in e.errors]
            response = error_response(e.status, e.code, e.message, **extra)
            if e.status == 413:
                response.force_close()  # its body was not read to the end (see _http_error)
            retry_after = getattr(e, "retry_after", 0)  # the store cannot be reached now
            if retry_after:
                response.headers["Retry-After"] = str(retry_after)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            response = self._http_error(request, e)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            response = error_response(
                500, "internal", "control failed to answer this request; its log has the details"
            )
        self.service.metrics.inc(f"http_responses_{response.status // 100}xx_total")
        return response

    @staticmethod
    def _http_error(request: web.Request, e: web.HTTPException) -> web.Response:
        code = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
            e.status, "http-error"
        )
        message = e.text or e.reason
        if e.status == 413:
            message = f"the request body is larger than {MAX_BODY} bytes"
        elif e.status == 404:
            message = f"no such endpoint: {request.method} {request.path[:200]}"
        elif e.status == 405:
            message = f"{request.method} is not allowed on {request.path[:200]}"
        response = error_response(e.status, code, message)
        if e.status == 413:
            # the body was not read to its end: what is left of it must never be taken for the
            # next request on this connection (a 400 from the parser, seen under load)
            response.force_close()
        for header in ("Retry-After", "Allow"):
            if header in e.headers:
                response.headers[header] = e.headers[header]
        return response

    async def _shedding(self, handler: Handler, request: web.Request) -> web.StreamResponse:
        """A route that costs work: 503 with Retry-After when control is busy (`overloaded`)."""
        busy = self.overloaded()
        if busy is not None:
            return busy
        with self.working():
            return await handler(request)


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "edgeward"
