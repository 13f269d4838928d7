"""Control's API for Git sources: add, list, show, remove, and the hook a Git server calls after
a push (authenticated by the source's hook secret, not a token)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control.api import schemas as s
from control.api.context import ApiContext, json_response, read_object
from control.gitops.source import GitSource
from control.model import Invalid

_ERROR = s.obj(("file", "path", "message"), file=s.STRING, path=s.STRING, message=s.STRING)


def _object(required: tuple[str, ...], properties: dict[str, s.Schema]) -> s.Schema:
    """An object schema whose property names need not be Python names ("applied-commit")."""
    return {"type": "object", "properties": properties, "required": list(required)}


GIT_SOURCE = _object(
    (
        "name",
        "tenant",
        "url",
        "branch",
        "path",
        "interval",
        "prune",
        "auth",
        "applied-commit",
        "seen-commit",
        "problem",
        "errors",
    ),
    {
        "name": s.STRING,
        "tenant": s.STRING,
        "url": s.STRING,
        "branch": s.STRING,
        "path": s.STRING,
        "interval": s.NUMBER,
        "prune": s.BOOLEAN,
        "auth": {"type": "string", "enum": ["none", "token", "ssh-key"]},
        "created": s.NUMBER,
        "applied-commit": s.STRING,
        "applied-at": s.nullable(s.NUMBER),
        "seen-commit": s.STRING,
        "seen-at": s.nullable(s.NUMBER),
        "problem": s.STRING,
        "errors": s.array(_ERROR),
    },
)
GIT_SOURCES = _object(("git-sources",), {"git-sources": s.array(GIT_SOURCE)})
GIT_SOURCE_ADDED = _object(
    (*GIT_SOURCE["required"], "hook-secret", "hook-path"),
    {**GIT_SOURCE["properties"], "hook-secret": s.STRING, "hook-path": s.STRING},
)
GIT_SOURCE_REQUEST: s.Schema = {
    **_object(
        ("url", "branch"),
        {
            "url": s.STRING,
            "branch": s.STRING,
            "path": s.STRING,
            "tenant": s.STRING,
            "interval": {"oneOf": [s.STRING, s.NUMBER]},
            "prune": s.BOOLEAN,
            "token": s.STRING,
            "ssh-key": s.STRING,
            "ca": s.STRING,
        },
    ),
    "additionalProperties": False,
}
HOOK_ANSWER = s.obj(("polling",), polling=s.STRING)
_FIELDS = {"url", "branch", "path", "tenant", "interval", "prune", "token", "ssh-key", "ca"}
HOOK_HEADERS = ("X-Edgeward-Hook-Secret", "X-Gitlab-Token")


def hook_path(name: str) -> str:
    return f"/v1/git-sources/{name}/hook"


async def list_sources(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    views = [s.to_json() for s in api.service.git.visible(who)]
    return json_response({"git-sources": views})


async def get_source(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    return json_response(api.service.git.get(who, request.match_info["name"]).to_json())


async def put_source(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    body = await read_object(request)
    unknown = set(body) - _FIELDS
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}")
    source: GitSource
    source, secret = await api.service.git.add(
        who,
        request.match_info["name"],
        body.get("url"),
        body.get("branch"),
        body.get("path", ""),
        body.get("tenant"),
        body.get("interval"),
        body.get("prune", True),
        body.get("token"),
        body.get("ssh-key"),
        ca=body.get("ca"),
    )
    view: dict[str, Any] = {
        **source.to_json(),
        "hook-secret": secret,
        "hook-path": hook_path(source.name),
    }
    return json_response(view, 201)


async def delete_source(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    await api.service.git.remove(who, request.match_info["name"])
    return json_response({"deleted": request.match_info["name"]})


async def hook(api: ApiContext, request: web.Request) -> web.Response:
    """Poll the source now. The secret comes as a bearer token, in X-Edgeward-Hook-Secret or
    X-Gitlab-Token, or as ?secret= (for servers that only sign): 401 when it is wrong."""
    name = request.match_info["name"]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    secret = value.strip() if scheme.lower() == "bearer" else ""
    for header in HOOK_HEADERS:
        secret = secret or request.headers.get(header, "")
    secret = secret or request.query.get("secret", "")
    await api.service.git.hook(name, secret or None)
    return json_response({"polling": name}, 202)
