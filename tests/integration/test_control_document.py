"""Control's answers match the schemas its OpenAPI document declares (a real control, a real
enrolled site): a handler that changes its answer without its schema fails here."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from enforcer.link.enrollment import enroll
from tests.support.control import ControlProcess, app_document, run

TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def problems(schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """Where `value` breaks `schema` (the subset of OpenAPI 3.0 schemas control uses)."""
    if value is None:
        return [] if schema.get("nullable") or not schema else [f"{where}: null"]
    found: list[str] = []
    for part in schema.get("allOf", []):
        found += problems(part, value, where)
    if "oneOf" in schema and all(problems(p, value, where) for p in schema["oneOf"]):
        found.append(f"{where}: matches none of oneOf")
    kind = schema.get("type")
    if kind is not None:
        wrong_bool = isinstance(value, bool) and kind in ("integer", "number")
        if not isinstance(value, TYPES[kind]) or wrong_bool:
            return [*found, f"{where}: {type(value).__name__} is not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                found.append(f"{where}: lacks {key}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                found += problems(properties[key], item, f"{where}.{key}")
            elif extra is False:
                found.append(f"{where}: unexpected {key}")
            elif isinstance(extra, dict):
                found += problems(extra, item, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for n, item in enumerate(value):
            found += problems(schema["items"], item, f"{where}[{n}]")
    return found


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, operations in document["paths"].items():
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path.split("?")[0]) and method.lower() in operations:
            return dict(operations[method.lower()])
    raise AssertionError(f"{method} {path} is not in the document")


def test_every_answer_matches_the_schema_the_document_declares(
    control: ControlProcess, tmp_path: Path
) -> None:
    admin = {"Authorization": f"Bearer {control.admin_token}"}

    async def main() -> None:
        identity = await enroll(control.bundle("store-1", {"zone": "a"}), tmp_path / "site")
        document = await control.call("GET", "/v1/openapi.json")
        operator = ssl.create_default_context(cafile=str(control.state_dir / "ca.pem"))
        calls: list[tuple[str, str, Any, bool]] = [
            ("POST", "/v1/tenants", {"name": "acme", "quota": "cpus=4"}, False),
            ("POST", "/v1/tokens", {"tenant": "acme"}, False),
            ("GET", "/v1/tenants", None, False),
            ("POST", "/v1/enrollment/tokens", {"site": "store-2", "labels": {"z": "b"}}, False),
            ("POST", "/v1/sites/store-1/assign", {"tenant": "acme"}, False),
            ("PATCH", "/v1/sites/store-1", {"labels": {"zone": "b"}}, False),
            ("PUT", "/v1/vaults/v", {"distribute": "zone = b"}, False),
            ("PUT", "/v1/vaults/v/secrets/creds", {"data": {"k": "value"}}, False),
            ("GET", "/v1/vaults", None, False),
            ("GET", "/v1/vaults/v", None, False),
            ("GET", "/v1/vaults/v/secrets/creds", None, False),
            ("PUT", "/v1/applications/app/versions/1", app_document("app", "1"), False),
            ("PUT", "/v1/applications/app/versions/1", app_document("app", "1"), False),
            ("GET", "/v1/applications", None, False),
            ("GET", "/v1/applications/app", None, False),
            ("GET", "/v1/applications/app/versions/latest", None, False),
            (
                "PUT",
                "/v1/deployments/app",
                {"name": "app", "application": "app", "placement": {"all-sites": True}},
                False,
            ),
            ("GET", "/v1/deployments", None, False),
            ("GET", "/v1/deployments/app", None, False),
            ("GET", "/v1/sync/desired?revision=0", None, True),
            ("POST", "/v1/sync/status", {"seq": 1, "status": None, "events": [{}]}, True),
            ("POST", "/v1/sync/status", {"seq": 1, "status": None, "events": [{}]}, True),
            ("GET", "/v1/sync/vault-key", None, True),
            ("GET", "/v1/sites", None, False),
            ("GET", "/v1/sites/store-1", None, False),
            ("GET", "/v1/sites/store-1/events", None, False),
            ("GET", "/v1/deployments/app/status", None, False),
            ("GET", "/v1/health", None, False),
            ("GET", "/v1/sites/nobody", None, False),
            ("PUT", "/v1/git-sources/src", {"url": "file:///nowhere.git", "branch": "main"}, False),
            ("GET", "/v1/git-sources", None, False),
            ("GET", "/v1/git-sources/src", None, False),
            ("POST", "/v1/git-sources/src/hook", {}, False),  # the admin token: not its secret
            ("DELETE", "/v1/git-sources/src", None, False),
            ("DELETE", "/v1/vaults/v/secrets/creds", None, False),
            ("DELETE", "/v1/vaults/v", None, False),
            ("DELETE", "/v1/deployments/app", None, False),
            ("POST", "/v1/sites/store-1/revoke", None, False),
        ]
        found: list[str] = []
        async with aiohttp.ClientSession() as session:
            for method, path, body, as_site in calls:
                context = identity.ssl_context() if as_site else operator
                async with session.request(
                    method,
                    control.url + path,
                    json=body,
                    headers={} if as_site else admin,
                    ssl=context,
                ) as r:
                    answer = await r.json()
                    responses = operation(document, method, path)["responses"]
                    declared = responses.get(str(r.status)) if r.status < 400 else None
                    declared = declared or responses["default"]
                    schema = declared["content"]["application/json"]["schema"]
                    found += [f"{method} {path} {r.status}: {p}" for p in problems(schema, answer)]
        assert found == []

    run(main())
