"""Control's API for vaults and secrets: names and keys go out, never a value."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control.api.context import ApiContext, json_response, read_object
from control.model import Invalid, NotFound
from control.vaults.envelope import Vault


def vault_view(vault: Vault) -> dict[str, Any]:
    """What the API shows of a vault: names and keys, never a value."""
    return {
        "name": vault.name,
        "tenant": vault.tenant,
        "distribute": vault.distribute,
        "unseal": vault.unseal,
        "version": vault.version,
        "secrets": {name: list(keys) for name, keys in sorted(vault.keys.items())},
        "created": vault.created,
        "updated": vault.updated,
    }


def secret_view(vault: Vault, secret: str) -> dict[str, Any]:
    return {
        "vault": vault.name,
        "secret": secret,
        "keys": list(vault.keys.get(secret, [])),
        "version": vault.version,
    }


async def list_vaults(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    return json_response({"vaults": [vault_view(v) for v in api.service.vaults.visible(who)]})


async def get_vault(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    return json_response(vault_view(api.service.vaults.get(who, request.match_info["vault"])))


async def put_vault(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    body = await read_object(request)
    unknown = set(body) - {"distribute", "unseal", "tenant", "name"}
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}")
    for key in ("unseal", "tenant"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise Invalid(f"{key} must be a string", [(key, "not a string")])
    created, vault = await api.service.vaults.put(
        who,
        request.match_info["vault"],
        body.get("distribute"),
        body.get("unseal"),
        body.get("tenant"),
    )
    return json_response({**vault_view(vault), "created": created}, 201 if created else 200)


async def delete_vault(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    await api.service.vaults.delete(who, request.match_info["vault"])
    return json_response({"deleted": request.match_info["vault"]})


async def get_secret(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    vault = api.service.vaults.get(who, request.match_info["vault"])
    secret = request.match_info["secret"]
    if secret not in vault.keys:
        raise NotFound(f"secret {vault.name}/{secret} does not exist")
    return json_response(secret_view(vault, secret))


async def put_secret(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    body = await read_object(request)
    if set(body) != {"data"}:
        raise Invalid('send {"data": {"key": "value", ...}}')
    secret = request.match_info["secret"]
    vault = await api.service.vaults.put_secret(
        who, request.match_info["vault"], secret, body["data"]
    )
    return json_response(secret_view(vault, secret))


async def delete_secret(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    vault = await api.service.vaults.delete_secret(
        who, request.match_info["vault"], request.match_info["secret"]
    )
    return json_response({"deleted": request.match_info["secret"], "version": vault.version})
