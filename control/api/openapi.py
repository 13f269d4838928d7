"""The OpenAPI document of control's API, served at ``GET /v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from control import __doc__ as _description

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

# (method, path, summary, auth): auth is "token" (bearer), "site" (mutual TLS), "secret" or ""
_ROUTES: list[tuple[str, str, str, str]] = [
    ("get", "/v1/health", "Liveness", ""),
    ("get", "/v1/openapi.json", "This document", ""),
    ("get", "/v1/metrics", "Prometheus metrics", ""),
    (
        "get",
        "/v1/enrollment/ca",
        "Control's CA certificate (PEM); check it against the bundle's fingerprint",
        "",
    ),
    ("post", "/v1/enrollment", "Enroll a site: {site, secret, csr} -> {certificate, ca}", "secret"),
    (
        "post",
        "/v1/enrollment/tokens",
        "Issue a one-time enrollment bundle: {site, labels, ttl}",
        "token",
    ),
    ("get", "/v1/tenants", "List tenants", "token"),
    ("post", "/v1/tenants", "Create a tenant: {name, parent, quota}", "token"),
    ("post", "/v1/tokens", "Create a token for a tenant: {tenant}", "token"),
    ("get", "/v1/sites", "List sites", "token"),
    ("get", "/v1/sites/{name}", "A site with its status and desired state", "token"),
    ("patch", "/v1/sites/{name}", "Change labels: {labels: {key: value or null}}", "token"),
    ("post", "/v1/sites/{name}/assign", "Assign the site to a tenant: {tenant}", "token"),
    ("post", "/v1/sites/{name}/revoke", "Revoke the site's certificate", "token"),
    ("get", "/v1/sites/{name}/events", "The site's latest events", "token"),
    ("get", "/v1/applications", "List applications and their versions", "token"),
    ("get", "/v1/applications/{name}", "An application's versions and latest spec", "token"),
    ("get", "/v1/applications/{name}/versions/{version}", "One version's spec", "token"),
    (
        "put",
        "/v1/applications/{name}/versions/{version}",
        "Push a version (201 new, 200 same spec, 409 different spec)",
        "token",
    ),
    ("get", "/v1/deployments", "List deployments", "token"),
    ("get", "/v1/deployments/{name}", "A deployment and its rollout", "token"),
    ("put", "/v1/deployments/{name}", "Create or change a deployment", "token"),
    ("delete", "/v1/deployments/{name}", "Delete a deployment", "token"),
    (
        "get",
        "/v1/deployments/{name}/status",
        "Per site: version, in sync, instances, contact",
        "token",
    ),
    (
        "get",
        "/v1/sync/desired",
        "Long-poll the site's desired state: ?revision=N&wait=S; "
        "200 {revision, applications} on change, 304 after the wait",
        "site",
    ),
    (
        "post",
        "/v1/sync/status",
        "Push a status batch {seq, status, events}: applied once; "
        "replay -> 200 duplicate, gap -> 409 naming the expected seq",
        "site",
    ),
    (
        "get",
        "/v1/sync/vault-key",
        "The site's vault key for remote unseal: {key: base64} (made on first request)",
        "site",
    ),
    ("get", "/v1/vaults", "List vaults: names, secrets and their keys, never values", "token"),
    ("get", "/v1/vaults/{vault}", "A vault: distribution, unseal mode, secrets' keys", "token"),
    (
        "put",
        "/v1/vaults/{vault}",
        "Create or change a vault: {distribute, unseal, tenant}",
        "token",
    ),
    ("delete", "/v1/vaults/{vault}", "Delete a vault: its sites lose it", "token"),
    ("get", "/v1/vaults/{vault}/secrets/{secret}", "A secret's keys (never values)", "token"),
    ("put", "/v1/vaults/{vault}/secrets/{secret}", "Set a secret: {data: {key: value}}", "token"),
    ("delete", "/v1/vaults/{vault}/secrets/{secret}", "Revoke a secret", "token"),
]


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, auth in _ROUTES:
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {
                "200": {"description": "OK"},
                "default": {
                    "description": "error",
                    "content": {"application/json": {"schema": _ERROR}},
                },
            },
        }
        if auth == "token":
            operation["security"] = [{"bearer": []}]
        elif auth == "site":
            operation["security"] = [{"siteCertificate": []}]
        else:
            operation["security"] = []
        parameters = [
            {"name": p.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
            for p in path.split("/")
            if p.startswith("{")
        ]
        if parameters:
            operation["parameters"] = parameters
        paths.setdefault(path, {})[method] = operation
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
