"""The OpenAPI 3.0 document of the enforcer's local API, served at ``GET /v1/openapi.json``.

Written by hand next to the routes in `enforcer.api.server`; a test checks that every route
there is described here with the same methods and path parameters.
"""

from __future__ import annotations

import copy
from typing import Any

from enforcer import __version__
from enforcer.facade import InstanceState

__all__ = ["ERROR_CODES", "openapi_document"]

# Every `error.code` the API answers with, and its HTTP status.
ERROR_CODES: dict[str, int] = {
    "invalid-body": 400,
    "invalid-parameter": 400,
    "name-mismatch": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not-found": 404,
    "method-not-allowed": 405,
    "conflict": 409,
    "body-too-large": 413,
    "unsupported-media-type": 415,
    "invalid-spec": 422,
    "internal": 500,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


_COMMON_ERRORS = {"401": _error("Unauthorized"), "500": _error("Internal")}

_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The application's name (a DNS label).",
    "schema": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", "maxLength": 63},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(ERROR_CODES)},
                    "message": {
                        "type": "string",
                        "description": "For the user; may have several lines (one per spec "
                        "error for invalid-spec).",
                    },
                },
            }
        },
    },
    "Health": {
        "type": "object",
        "required": ["healthy"],
        "properties": {
            "healthy": {"type": "boolean"},
            "runtime": {
                "type": "string",
                "description": '"available" or "unavailable: <why>"',
            },
            "checks": {"type": "object", "additionalProperties": True},
        },
        "additionalProperties": True,
    },
    "Host": {
        "type": "object",
        "description": "This host: id, labels, devices (with their labels), GPUs (vendor, model, "
        "memory) and capacity.",
        "properties": {
            "id": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "cpus": {"type": "number"},
            "memory": {"type": "integer", "description": "Bytes."},
            "devices": {
                "description": "The device inventory: devices (node, subsystem, labels) and "
                "GPUs (index, vendor, model, memory, nodes)."
            },
        },
        "additionalProperties": True,
    },
    "Site": {
        "type": "object",
        "description": "The site: name, labels, hosts, leader and the control link.",
        "properties": {
            "name": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "hosts": {"type": "array", "items": {}},
            "leader": {"type": "string", "nullable": True},
            "control": {},
        },
        "additionalProperties": True,
    },
    "ApplicationSpec": {
        "type": "object",
        "description": "An application spec as in DESIGN.md (name, version, services); "
        "validated by the enforcer.",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "services": {"type": "array", "items": {"type": "object"}},
        },
        "additionalProperties": True,
    },
    "Application": {
        "type": "object",
        "required": ["name", "version", "tenant", "source", "spec", "updated"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "tenant": {"type": "string"},
            "source": {"type": "string", "enum": ["local", "control"]},
            "spec": _ref("ApplicationSpec"),
            "updated": {"type": "number", "description": "Unix time."},
        },
    },
    "AppliedApplication": {
        "allOf": [
            _ref("Application"),
            {
                "type": "object",
                "required": ["changed"],
                "properties": {
                    "changed": {
                        "type": "boolean",
                        "description": "Whether the stored spec changed.",
                    }
                },
            },
        ]
    },
    "ApplicationList": {
        "type": "object",
        "required": ["applications"],
        "properties": {"applications": {"type": "array", "items": _ref("Application")}},
    },
    "Container": {
        "type": "object",
        "required": ["name", "state", "restarts"],
        "properties": {
            "name": {"type": "string"},
            "state": {"type": "string", "description": "Docker's state."},
            "restarts": {"type": "integer"},
            "last_exit_code": {"type": "integer", "nullable": True},
            "ready": {"type": "boolean", "nullable": True},
        },
    },
    "Instance": {
        "type": "object",
        "required": ["id", "app", "service", "tenant", "host", "version", "state", "ready"],
        "properties": {
            "id": {"type": "string", "description": "<app>.<service>.<n> or <host-id>"},
            "app": {"type": "string"},
            "service": {"type": "string"},
            "tenant": {"type": "string"},
            "host": {"type": "string"},
            "version": {"type": "string"},
            "state": {
                "type": "string",
                "enum": [state.value for state in InstanceState],
            },
            "ready": {"type": "boolean"},
            "restarts": {"type": "integer"},
            "reason": {"type": "string"},
            "last_exit_code": {"type": "integer", "nullable": True},
            "next_retry": {
                "type": "number",
                "nullable": True,
                "description": "Unix time of the next restart attempt.",
            },
            "containers": {"type": "array", "items": _ref("Container")},
        },
    },
    "InstanceList": {
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": {"type": "array", "items": _ref("Instance")}},
    },
    "Event": {
        "type": "object",
        "required": ["seq", "time", "kind", "message"],
        "properties": {
            "seq": {"type": "integer"},
            "time": {"type": "number", "description": "Unix time."},
            "kind": {"type": "string", "example": "instance.crashed"},
            "message": {"type": "string"},
            "app": {"type": "string"},
            "instance": {"type": "string"},
            "tenant": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": True},
        },
    },
}

_RESPONSES: dict[str, Any] = {
    name: _json(_ref("Error"), description)
    for name, description in {
        "BadRequest": "A parameter or the body is malformed (invalid-parameter, invalid-body, "
        "name-mismatch).",
        "Unauthorized": "The bearer token is missing (TCP) or wrong (TCP or socket).",
        "Forbidden": "A tenant token may not do this: only the site admin applies site-local "
        "applications and reads the metrics.",
        "NotFound": "No such application, instance or container.",
        "Conflict": "The request clashes with existing state, e.g. an application owned by "
        "control.",
        "TooLarge": "The body is larger than the server accepts.",
        "UnsupportedMediaType": "The body is neither JSON nor YAML.",
        "InvalidSpec": "The spec is not valid; the message lists every error with its path, "
        "one per line.",
        "Internal": "An unexpected error; details are in the enforcer's log only.",
    }.items()
}

_PATHS: dict[str, Any] = {
    "/v1/health": {
        "get": {
            "operationId": "getHealth",
            "summary": "Whether the enforcer is healthy (200) or not (503).",
            "responses": {
                "200": _json(_ref("Health"), "Healthy."),
                "503": _json(_ref("Health"), "Unhealthy; the body says why."),
                **_COMMON_ERRORS,
            },
        }
    },
    "/v1/host": {
        "get": {
            "operationId": "getHost",
            "summary": "This host: labels, devices, GPUs, capacity.",
            "responses": {"200": _json(_ref("Host"), "The host."), **_COMMON_ERRORS},
        }
    },
    "/v1/site": {
        "get": {
            "operationId": "getSite",
            "summary": "The site: name, labels, hosts, leader, control link.",
            "responses": {"200": _json(_ref("Site"), "The site."), **_COMMON_ERRORS},
        }
    },
    "/v1/applications": {
        "get": {
            "operationId": "listApplications",
            "summary": "Every application at this site.",
            "responses": {
                "200": _json(_ref("ApplicationList"), "The applications."),
                **_COMMON_ERRORS,
            },
        }
    },
    "/v1/applications/{name}": {
        "parameters": [_NAME],
        "get": {
            "operationId": "getApplication",
            "summary": "One application.",
            "responses": {
                "200": _json(_ref("Application"), "The application."),
                "404": _error("NotFound"),
                **_COMMON_ERRORS,
            },
        },
        "put": {
            "operationId": "applyApplication",
            "summary": "Create or update a site-local application; the spec's name must be "
            "the name in the path.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("ApplicationSpec")},
                    "application/yaml": {"schema": _ref("ApplicationSpec")},
                },
            },
            "responses": {
                "200": _json(_ref("AppliedApplication"), "Updated, or unchanged."),
                "201": _json(_ref("AppliedApplication"), "Created."),
                "400": _error("BadRequest"),
                "403": _error("Forbidden"),
                "409": _error("Conflict"),
                "413": _error("TooLarge"),
                "415": _error("UnsupportedMediaType"),
                "422": _error("InvalidSpec"),
                **_COMMON_ERRORS,
            },
        },
        "delete": {
            "operationId": "removeApplication",
            "summary": "Remove an application and its instances.",
            "parameters": [
                {
                    "name": "purge",
                    "in": "query",
                    "required": False,
                    "description": "Also remove its persistent volumes.",
                    "schema": {"type": "boolean", "default": False},
                }
            ],
            "responses": {
                "204": {"description": "Removed."},
                "400": _error("BadRequest"),
                "404": _error("NotFound"),
                "409": _error("Conflict"),
                **_COMMON_ERRORS,
            },
        },
    },
    "/v1/instances": {
        "get": {
            "operationId": "listInstances",
            "summary": "Every service instance at this site, with state and reason.",
            "responses": {
                "200": _json(_ref("InstanceList"), "The instances."),
                **_COMMON_ERRORS,
            },
        }
    },
    "/v1/instances/{id}/logs": {
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "The instance id, e.g. vision.detector.0.",
                "schema": {"type": "string"},
            }
        ],
        "get": {
            "operationId": "getLogs",
            "summary": "A container's output, streamed (chunked).",
            "parameters": [
                {
                    "name": "container",
                    "in": "query",
                    "required": False,
                    "description": "The container; default: the instance's first.",
                    "schema": {"type": "string"},
                },
                {
                    "name": "tail",
                    "in": "query",
                    "required": False,
                    "description": "Only the last N lines; default: all.",
                    "schema": {"type": "integer", "minimum": 0},
                },
                {
                    "name": "follow",
                    "in": "query",
                    "required": False,
                    "description": "Keep streaming new output.",
                    "schema": {"type": "boolean", "default": False},
                },
            ],
            "responses": {
                "200": {
                    "description": "The output, streamed.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "400": _error("BadRequest"),
                "404": _error("NotFound"),
                **_COMMON_ERRORS,
            },
        },
    },
    "/v1/events": {
        "get": {
            "operationId": "getEvents",
            "summary": "Events as newline-delimited JSON, streamed.",
            "parameters": [
                {
                    "name": "since",
                    "in": "query",
                    "required": False,
                    "description": "Only events with a larger seq.",
                    "schema": {"type": "integer", "minimum": 0, "default": 0},
                },
                {
                    "name": "follow",
                    "in": "query",
                    "required": False,
                    "description": "Keep streaming new events.",
                    "schema": {"type": "boolean", "default": False},
                },
            ],
            "responses": {
                "200": {
                    "description": "One Event object per line.",
                    "content": {"application/x-ndjson": {"schema": _ref("Event")}},
                },
                "400": _error("BadRequest"),
                **_COMMON_ERRORS,
            },
        }
    },
    "/v1/metrics": {
        "get": {
            "operationId": "getMetrics",
            "summary": "Prometheus text exposition (version 0.0.4).",
            "responses": {
                "200": {
                    "description": "The metrics.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "403": _error("Forbidden"),
                **_COMMON_ERRORS,
            },
        }
    },
    "/v1/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document.",
            "responses": {
                "200": _json({"type": "object"}, "The OpenAPI 3.0 document."),
                **_COMMON_ERRORS,
            },
        }
    },
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change it)."""
    return copy.deepcopy(
        {
            "openapi": "3.0.3",
            "info": {
                "title": "Edgeward enforcer local API",
                "version": __version__,
                "description": "The enforcer's site-local API. On the unix socket no token is "
                "needed; on the optional TCP listener every request needs "
                "`Authorization: Bearer <token>`. A tenant's token (on either) sees and "
                "touches only that tenant's applications, instances, logs and events; others "
                "answer 404 as if they did not exist. Errors are "
                '`{"error": {"code": ..., "message": ...}}`; an unknown path answers 404 and '
                "a wrong method 405, both with that body.",
            },
            "servers": [{"url": "/"}],
            "paths": _PATHS,
            "components": {
                "schemas": _SCHEMAS,
                "responses": {
                    **_RESPONSES,
                    "MethodNotAllowed": _json(_ref("Error"), "The path has no such method."),
                },
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
            "security": [{}, {"bearer": []}],
        }
    )
