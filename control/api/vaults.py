"""Control's vault endpoints (mixed into `control.api.routes.ControlAPI`): never a value out."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from control.fleet.access import Principal
from control.model import Invalid, NotFound, Site
from control.service import ControlService
from control.vaults.envelope import Vault
from control.vaults.operations import encode_key, vault_view


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


_json = json_response


class VaultHandlers:
    service: ControlService

    async def _principal(self, request: web.Request) -> Principal:
        raise NotImplementedError

    async def _object(self, request: web.Request) -> dict[str, Any]:
        raise NotImplementedError

    def _site(self, request: web.Request) -> Site:
        raise NotImplementedError

    def add_vault_routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/v1/vaults", self.list_vaults)
        r.add_get("/v1/vaults/{vault}", self.get_vault)
        r.add_put("/v1/vaults/{vault}", self.put_vault)
        r.add_delete("/v1/vaults/{vault}", self.delete_vault)
        r.add_get("/v1/vaults/{vault}/secrets/{secret}", self.get_secret)
        r.add_put("/v1/vaults/{vault}/secrets/{secret}", self.put_secret)
        r.add_delete("/v1/vaults/{vault}/secrets/{secret}", self.delete_secret)
        r.add_get("/v1/sync/vault-key", self.sync_vault_key)

    async def list_vaults(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        return _json({"vaults": [vault_view(v) for v in self.service.list_vaults(who)]})

    async def get_vault(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        return _json(vault_view(self.service.vault(who, request.match_info["vault"])))

    async def put_vault(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        body = await self._object(request)
        unknown = set(body) - {"distribute", "unseal", "tenant", "name"}
        if unknown:
            raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}")
        created, vault = await self.service.put_vault(
            who,
            request.match_info["vault"],
            body.get("distribute"),
            body.get("unseal"),
            body.get("tenant"),
        )
        return _json({**vault_view(vault), "created": created}, 201 if created else 200)

    async def delete_vault(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        await self.service.delete_vault(who, request.match_info["vault"])
        return _json({"deleted": request.match_info["vault"]})

    def _secret_view(self, vault: Vault, secret: str) -> dict[str, Any]:
        return {
            "vault": vault.name,
            "secret": secret,
            "keys": list(vault.keys.get(secret, [])),
            "version": vault.version,
        }

    async def get_secret(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        vault = self.service.vault(who, request.match_info["vault"])
        secret = request.match_info["secret"]
        if secret not in vault.keys:
            raise NotFound(f"secret {vault.name}/{secret} does not exist")
        return _json(self._secret_view(vault, secret))

    async def put_secret(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        body = await self._object(request)
        if set(body) != {"data"}:
            raise Invalid('send {"data": {"key": "value", ...}}')
        vault = await self.service.put_secret(
            who, request.match_info["vault"], request.match_info["secret"], body["data"]
        )
        return _json(self._secret_view(vault, request.match_info["secret"]))

    async def delete_secret(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        vault = await self.service.delete_secret(
            who, request.match_info["vault"], request.match_info["secret"]
        )
        return _json({"deleted": request.match_info["secret"], "version": vault.version})

    async def sync_vault_key(self, request: web.Request) -> web.Response:
        site = self._site(request)
        key = await self.service.site_vault_key(site)
        return _json({"key": encode_key(key)})
