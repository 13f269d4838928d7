"""The schemas of the enforcer's local API: request and response bodies, errors, responses.

`enforcer.api.routes` names them for each route; `enforcer.api.openapi` puts them in the
document. Each shape is written here once.
"""

from __future__ import annotations

from typing import Any

from enforcer.facade import InstanceState

__all__ = [
    "COMMON_ERRORS",
    "ERROR_CODES",
    "RESPONSES",
    "SCHEMAS",
    "error",
    "json_response",
    "ref",
]

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
    "enrollment-failed": 422,
    "join-failed": 422,
    "leave-failed": 422,
    "internal": 500,
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


COMMON_ERRORS = {"401": error("Unauthorized"), "500": error("Internal")}

SCHEMAS: dict[str, Any] = {
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
        "required": ["healthy", "runtime", "checks"],
        "properties": {
            "healthy": {
                "type": "boolean",
                "description": "The runtime is reachable and the store answers.",
            },
            "runtime": {
                "type": "string",
                "description": '"available" or "unavailable: <why>"',
            },
            "checks": {
                "type": "object",
                "description": "One line per part: runtime, store, outbound-policy.",
                "additionalProperties": {"type": "string"},
            },
            "control": {"type": "string", "description": "The control link in one line."},
            "version": {"type": "string"},
            "uptime": {"type": "number", "description": "Seconds since the enforcer started."},
        },
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
        "description": "The site from real state: its hosts (the membership record in the site "
        "store), the leader, the store's health and the control link.",
        "required": ["name", "labels", "hosts", "leader", "store", "control"],
        "properties": {
            "name": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "hosts": {"type": "array", "items": ref("SiteHost")},
            "leader": {
                "type": "string",
                "nullable": True,
                "description": "The leader's host id; null when no host holds a live lease.",
            },
            "store": ref("SiteStore"),
            "control": ref("ControlLink"),
        },
    },
    "SiteHost": {
        "type": "object",
        "required": ["id", "address", "role", "state", "lease-age"],
        "properties": {
            "id": {"type": "string"},
            "address": {"type": "string"},
            "role": {"type": "string", "enum": ["controller", "worker"]},
            "state": {"type": "string", "enum": ["alive", "dead"]},
            "lease-age": {
                "type": "number",
                "description": "Seconds since the host last renewed its lease.",
            },
        },
    },
    "SiteStore": {
        "type": "object",
        "required": ["kind", "state"],
        "properties": {
            "kind": {"type": "string", "enum": ["sqlite"]},
            "path": {"type": "string"},
            "state": {"type": "string", "enum": ["ok", "failed"]},
            "error": {"type": "string"},
        },
    },
    "ControlLink": {
        "type": "object",
        "required": ["enrolled", "state", "description"],
        "properties": {
            "enrolled": {"type": "boolean"},
            "state": {
                "type": "string",
                "enum": ["not enrolled", "connecting", "connected", "unreachable", "refused"],
            },
            "description": {"type": "string", "description": "The link in one line."},
            "control": {"type": "string", "description": "Control's URL."},
            "site": {"type": "string", "description": "The name control knows the site by."},
            "since": {"type": "number", "description": "Unix time the state began."},
            "last_contact": {
                "type": "number",
                "nullable": True,
                "description": "Unix time of the last successful exchange with control.",
            },
            "error": {"type": "string", "description": "The last error; empty when connected."},
            "revision": {"type": "integer", "description": "The desired state applied."},
            "queued_events": {"type": "integer"},
        },
    },
    "Enrolled": {
        "type": "object",
        "required": ["site", "control"],
        "properties": {
            "site": {"type": "string", "description": "The site's name at control."},
            "control": {"type": "string", "description": "Control's URL."},
        },
    },
    "Enrollment": {
        "type": "object",
        "required": ["bundle"],
        "properties": {
            "bundle": {
                "type": "string",
                "description": "The enrollment bundle from `edge-control site token`.",
            }
        },
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
            "spec": ref("ApplicationSpec"),
            "updated": {"type": "number", "description": "Unix time."},
        },
    },
    "AppliedApplication": {
        "allOf": [
            ref("Application"),
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
        "properties": {"applications": {"type": "array", "items": ref("Application")}},
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
            "containers": {"type": "array", "items": ref("Container")},
            "gpus": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The host's GPUs assigned to it (PCI slots).",
            },
        },
    },
    "InstanceList": {
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": {"type": "array", "items": ref("Instance")}},
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

RESPONSES: dict[str, Any] = {
    name: json_response(ref("Error"), description)
    for name, description in {
        "BadRequest": "A parameter or the body is malformed (invalid-parameter, invalid-body, "
        "name-mismatch).",
        "Unauthorized": "The bearer token is missing (TCP) or wrong (TCP or socket).",
        "Forbidden": "A tenant token may not do this: only the site admin applies site-local "
        "applications and reads the metrics.",
        "NotFound": "No such application, instance or container.",
        "Conflict": "The request clashes with existing state, e.g. an application owned by "
        "control, or a site enrolled already.",
        "TooLarge": "The body is larger than the server accepts.",
        "UnsupportedMediaType": "The body is neither JSON nor YAML.",
        "InvalidSpec": "The spec is not valid; the message lists every error with its path, "
        "one per line.",
        "EnrollmentFailed": "The bundle could not be used (malformed, expired, used once "
        "already, control unreachable or refusing); the message says which.",
        "Internal": "An unexpected error; details are in the enforcer's log only.",
    }.items()
}
