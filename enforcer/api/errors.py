"""Every failure of a request as the JSON error body ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from enforcer.facade import Conflict, Forbidden, Invalid, NotFound
from enforcer.site.store import StoreError

__all__ = ["ApiError", "error_response", "errors_middleware"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "invalid-body",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
}


class ApiError(Exception):
    """An error answer: HTTP status, ``error.code`` and a message for the user."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers or None, dumps=_dumps)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns every failure into the JSON error body; an unexpected one is logged with its
    traceback and answered with a generic 500, so one request's failure never reaches
    another."""
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, **exc.headers)
        if exc.status == 413:
            # the body was not read to its end: what is left of it must never be parsed as the
            # next request on this connection
            response.force_close()
        return response
    except NotFound as exc:
        return error_response(404, "not-found", str(exc) or "not found")
    except Forbidden as exc:
        return error_response(403, "forbidden", str(exc) or "forbidden")
    except Conflict as exc:
        return error_response(409, "conflict", str(exc) or "conflict")
    except Invalid as exc:
        return error_response(422, "invalid-spec", str(exc) or "invalid spec")
    except StoreError as exc:  # a full disk, a read-only file system: nothing was changed
        return error_response(507, "not-stored", f"{exc}; nothing was changed")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"no such path: {request.path}"
        elif exc.status == 405:
            allowed = exc.headers.get("Allow", "")
            message = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
        else:
            message = exc.text or exc.reason
        code = _HTTP_CODES.get(exc.status, exc.reason.lower().replace(" ", "-"))
        headers = {
            name: value
            for name, value in exc.headers.items()
            if name.lower() in ("allow", "www-authenticate", "retry-after")
        }
        return error_response(exc.status, code, message, **headers)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error; see the enforcer's log")
