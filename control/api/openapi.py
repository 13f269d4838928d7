"""The OpenAPI document of control's API, made from its route table; ``GET /v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from control import __doc__ as _description
from control.api.schemas import ERROR
from control.api.table import ROUTES, Auth, Route

_SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    Auth.TOKEN: [{"bearer": []}],
    Auth.SITE: [{"siteCertificate": []}],
    Auth.METRICS: [{"bearer": []}, {}],  # {}: none needed with metrics-public = true
    Auth.SECRET: [],
    Auth.NONE: [],
}


def _operation(route: Route) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, answer in route.answers.items():
        if answer == "":
            responses[str(status)] = {"description": "no body"}
        elif isinstance(answer, str):
            responses[str(status)] = {
                "description": "OK",
                "content": {answer: {"schema": {"type": "string"}}},
            }
        else:
            responses[str(status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": answer}},
            }
    if route.shed:
        responses["503"] = {"content": {"application/json": {"schema": ERROR}}}
    if "503" in responses:
        responses["503"].update(
            description="control is busy: retry after the seconds in Retry-After",
            headers={"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
        )
    responses["default"] = {
        "description": "an error, with its code and a message naming what is wrong",
        "content": {"application/json": {"schema": ERROR}},
    }
    operation: dict[str, Any] = {
        "operationId": route.handler.__module__.rsplit(".", 1)[-1] + "." + route.handler.__name__,
        "summary": route.summary,
        "security": _SECURITY[route.auth],
        "responses": responses,
    }
    parameters: list[dict[str, Any]] = [
        {"name": p.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
        for p in route.path.split("/")
        if p.startswith("{")
    ]
    parameters += [
        {
            "name": q.name,
            "in": "query",
            "required": False,
            "description": q.description,
            "schema": {"type": "string"}
            if q.text
            else {"type": "integer", "minimum": q.minimum, "maximum": q.maximum},
        }
        for q in route.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": route.request}},
        }
    return operation


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Edgeward control API",
            "version": "1",
            "description": (_description or "").strip(),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "siteCertificate": {"type": "mutualTLS"},
            }
        },
    }
