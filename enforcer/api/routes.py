"""The route table of the enforcer's local API: every route once, with what it takes and answers.

`enforcer.api.server.make_app` serves exactly these routes and `enforcer.api.openapi` describes
exactly these; a test checks that the served routes and the document agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from enforcer.api.schemas import COMMON_ERRORS, error, json_response, ref

__all__ = ["ROUTES", "Param", "Route"]


@dataclass(frozen=True)
class Param:
    """A query or path parameter."""

    name: str
    where: str  # "query" or "path"
    description: str
    schema: Mapping[str, Any]
    required: bool = False

    def to_openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.where,
            "required": self.required or self.where == "path",
            "description": self.description,
            "schema": dict(self.schema),
        }


@dataclass(frozen=True)
class Route:
    """One method on one path: the handler that serves it and its OpenAPI operation."""

    method: str  # GET, PUT, POST, DELETE
    path: str  # aiohttp's form, which is OpenAPI's: /v1/applications/{name}
    handler: str  # the name of the method of `enforcer.api.server.Handlers`
    operation: str  # operationId
    summary: str
    responses: Mapping[str, Any]
    params: tuple[Param, ...] = ()
    body: Mapping[str, Any] | None = None  # media type -> schema
    streams: bool = False  # chunked answer: served without HEAD
    path_params: tuple[Param, ...] = ()


def _bool(name: str, description: str) -> Param:
    return Param(name, "query", description, {"type": "boolean", "default": False})


_NAME = Param(
    "name",
    "path",
    "The application's name (a DNS label).",
    {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", "maxLength": 63},
    required=True,
)
_INSTANCE = Param(
    "id", "path", "The instance id, e.g. vision.detector.0.", {"type": "string"}, required=True
)
_SPEC = {"schema": ref("ApplicationSpec")}

_STRING = {"type": "string"}
_WARNINGS = {"type": "array", "items": _STRING}
_JOIN_BUNDLE_REQUEST = {
    "type": "object",
    "properties": {
        "role": {"type": "string", "enum": ["controller", "worker"], "default": "controller"},
        "expires": {"type": "string", "default": "1h", "description": "A duration, e.g. 1h."},
    },
}
_JOIN_BUNDLE = {
    "type": "object",
    "required": ["bundle", "role", "expires", "warnings"],
    "properties": {
        "bundle": _STRING,
        "role": _STRING,
        "expires": {"type": "integer", "description": "Unix time."},
        "warnings": _WARNINGS,
    },
}
_JOIN_REQUEST = {
    "type": "object",
    "required": ["bundle"],
    "properties": {
        "bundle": _STRING,
        "advertise": {
            "type": "string",
            "description": "This host's address inside the site; default: cluster.advertise.",
        },
    },
}
_JOINED = {
    "type": "object",
    "required": ["site", "host", "role", "warnings"],
    "properties": {"site": _STRING, "host": _STRING, "role": _STRING, "warnings": _WARNINGS},
}

ROUTES: tuple[Route, ...] = (
    Route(
        "GET", "/v1/health", "health", "getHealth",
        "Whether the enforcer is healthy (200) or not (503), with a line per part.",
        {
            "200": json_response(ref("Health"), "Healthy."),
            "503": json_response(ref("Health"), "Unhealthy; the checks say why."),
            **COMMON_ERRORS,
        },
    ),
    Route(
        "GET", "/v1/host", "host", "getHost", "This host: labels, devices, GPUs, capacity.",
        {"200": json_response(ref("Host"), "The host."), **COMMON_ERRORS},
    ),
    Route(
        "GET", "/v1/site", "site", "getSite",
        "The site: name, labels, hosts, leader, store, control link.",
        {"200": json_response(ref("Site"), "The site."), **COMMON_ERRORS},
    ),
    Route(
        "GET", "/v1/applications", "applications", "listApplications",
        "Every application at this site.",
        {"200": json_response(ref("ApplicationList"), "The applications."), **COMMON_ERRORS},
    ),
    Route(
        "GET", "/v1/applications/{name}", "application", "getApplication", "One application.",
        {
            "200": json_response(ref("Application"), "The application."),
            "404": error("NotFound"),
            **COMMON_ERRORS,
        },
        path_params=(_NAME,),
    ),
    Route(
        "PUT", "/v1/applications/{name}", "apply", "applyApplication",
        "Create or update a site-local application; the spec's name must be the name in the "
        "path. An application that control owns is refused (409).",
        {
            "200": json_response(ref("AppliedApplication"), "Updated, or unchanged."),
            "201": json_response(ref("AppliedApplication"), "Created."),
            "400": error("BadRequest"),
            "403": error("Forbidden"),
            "409": error("Conflict"),
            "413": error("TooLarge"),
            "415": error("UnsupportedMediaType"),
            "422": error("InvalidSpec"),
            **COMMON_ERRORS,
        },
        body={"application/json": _SPEC, "application/yaml": _SPEC},
        path_params=(_NAME,),
    ),
    Route(
        "DELETE", "/v1/applications/{name}", "remove", "removeApplication",
        "Remove a site-local application and its instances. An application that control "
        "owns is refused (409): only control removes it.",
        {
            "204": {"description": "Removed."},
            "400": error("BadRequest"),
            "404": error("NotFound"),
            "409": error("Conflict"),
            **COMMON_ERRORS,
        },
        params=(_bool("purge", "Also remove its persistent volumes."),),
        path_params=(_NAME,),
    ),
    Route(
        "GET", "/v1/instances", "instances", "listInstances",
        "Every service instance at this site, with state and reason.",
        {"200": json_response(ref("InstanceList"), "The instances."), **COMMON_ERRORS},
    ),
    Route(
        "GET", "/v1/instances/{id}/logs", "logs", "getLogs",
        "A container's output, streamed (chunked).",
        {
            "200": {
                "description": "The output, streamed.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "400": error("BadRequest"),
            "404": error("NotFound"),
            **COMMON_ERRORS,
        },
        params=(
            Param(
                "container", "query", "The container; default: the instance's first.",
                {"type": "string"},
            ),
            Param(
                "tail", "query", "Only the last N lines; default: all.",
                {"type": "integer", "minimum": 0},
            ),
            _bool("follow", "Keep streaming new output."),
        ),
        streams=True,
        path_params=(_INSTANCE,),
    ),
    Route(
        "GET", "/v1/events", "events", "getEvents",
        "Events as newline-delimited JSON, streamed.",
        {
            "200": {
                "description": "One Event object per line.",
                "content": {"application/x-ndjson": {"schema": ref("Event")}},
            },
            "400": error("BadRequest"),
            **COMMON_ERRORS,
        },
        params=(
            Param(
                "since", "query", "Only events with a larger seq.",
                {"type": "integer", "minimum": 0, "default": 0},
            ),
            _bool("follow", "Keep streaming new events."),
        ),
        streams=True,
    ),
    Route(
        "GET", "/v1/metrics", "metrics", "getMetrics",
        "Prometheus text exposition (version 0.0.4).",
        {
            "200": {
                "description": "The metrics.",
                "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
            },
            "403": error("Forbidden"),
            **COMMON_ERRORS,
        },
    ),
    Route(
        "POST", "/v1/enrollment", "enroll", "enroll",
        "Enroll this running enforcer with control (the bundle from `edge-control site token`); "
        "it starts syncing at once. A site enrolled already is refused (409).",
        {
            "200": json_response(ref("Enrolled"), "Enrolled; syncing with control."),
            "400": error("BadRequest"),
            "403": error("Forbidden"),
            "409": error("Conflict"),
            "415": error("UnsupportedMediaType"),
            "422": error("EnrollmentFailed"),
            **COMMON_ERRORS,
        },
        body={"application/json": {"schema": ref("Enrollment")}},
    ),
    Route(
        "POST", "/v1/site/join-bundle", "site_join_bundle", "createJoinBundle",
        "On a controller of a multi-host site: a one-time join bundle for a new host "
        "(`edge-enforcer site join-bundle`). Not a controller of a site with its own store: 409.",
        {
            "200": json_response(_JOIN_BUNDLE, "The bundle, its role and expiry, any warnings."),
            "400": error("BadRequest"),
            "403": error("Forbidden"),
            "409": error("Conflict"),
            "415": error("UnsupportedMediaType"),
            **COMMON_ERRORS,
        },
        body={"application/json": {"schema": _JOIN_BUNDLE_REQUEST}},
    ),
    Route(
        "POST", "/v1/site/join", "site_join", "joinSite",
        "This running one-host site joins the multi-host site of a join bundle "
        "(`edge-enforcer site join`); its applications move into the site's store and its "
        "containers keep running. A bundle that is wrong, used or expired: 422.",
        {
            "200": json_response(_JOINED, "Joined: the site, this host's id and role, warnings."),
            "400": error("BadRequest"),
            "403": error("Forbidden"),
            "415": error("UnsupportedMediaType"),
            "422": json_response(ref("Error"), "The join was refused; the message says why."),
            **COMMON_ERRORS,
        },
        body={"application/json": {"schema": _JOIN_REQUEST}},
    ),
    Route(
        "POST", "/v1/site/leave", "site_leave", "leaveSite",
        "This host leaves its multi-host site (`edge-enforcer site leave`): its instances move "
        "to other hosts first, then it deregisters and a controller's store member is removed. "
        "Refused (422, nothing changes) for the last controller, or when the store's quorum "
        "would be at risk; 409 on a host in no multi-host site.",
        {
            "200": json_response(_JOINED, "Left: the site, this host's id and role, warnings."),
            "403": error("Forbidden"),
            "409": error("Conflict"),
            "422": json_response(ref("Error"), "The leave was refused; the message says why."),
            **COMMON_ERRORS,
        },
    ),
    Route(
        "GET", "/v1/openapi.json", "openapi", "getOpenApi", "This document.",
        {"200": json_response({"type": "object"}, "The OpenAPI 3.0 document."), **COMMON_ERRORS},
    ),
)  # fmt: skip
