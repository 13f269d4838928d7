"""The OpenAPI 3.0 document of the enforcer's local API, served at ``GET /v1/openapi.json``.

Generated from the route table (`enforcer.api.routes.ROUTES`) and the schemas
(`enforcer.api.schemas`), so it describes exactly what is served.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from enforcer import __version__
from enforcer.api.routes import ROUTES, Route
from enforcer.api.schemas import ERROR_CODES, RESPONSES, SCHEMAS, json_response, ref

__all__ = ["ERROR_CODES", "openapi_document"]

_DESCRIPTION = (
    "The enforcer's site-local API. On the unix socket no token is needed; on the optional "
    "TCP listener (TLS unless it listens on loopback) every request needs "
    "`Authorization: Bearer <token>`. A tenant's token (on either) sees and touches only that "
    "tenant's applications, instances, logs and events; others answer 404 as if they did not "
    'exist. Errors are `{"error": {"code": ..., "message": ...}}`; an unknown path answers '
    "404 and a wrong method 405, both with that body."
)


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation,
        "summary": route.summary,
        "responses": copy.deepcopy(dict(route.responses)),
    }
    if route.params:
        op["parameters"] = [p.to_openapi() for p in route.params]
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": copy.deepcopy(dict(route.body))}
    return op


def paths(routes: Sequence[Route] = ROUTES) -> dict[str, Any]:
    """The document's ``paths`` for `routes`."""
    out: dict[str, Any] = {}
    for route in routes:
        item = out.setdefault(route.path, {})
        for param in route.path_params:
            described = item.setdefault("parameters", [])
            if all(p["name"] != param.name for p in described):
                described.append(param.to_openapi())
        method = route.method.lower()
        if method in item:
            raise ValueError(f"{route.method} {route.path} is in the route table twice")
        item[method] = _operation(route)
    return out


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change it)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Edgeward enforcer local API",
            "version": __version__,
            "description": _DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "paths": paths(),
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
            "responses": {
                **copy.deepcopy(RESPONSES),
                "MethodNotAllowed": json_response(ref("Error"), "The path has no such method."),
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }
