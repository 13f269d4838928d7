"""Tenant tokens on the local API: a tenant sees and touches only its own part of the site."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from enforcer.api import make_app, serve
from enforcer.api.tenants import load_tenant_tokens
from enforcer.cli.client import Client, ClientError
from enforcer.config.load import parse_config
from enforcer.config.model import EnforcerConfig
from enforcer.facade import AppRecord, AppSource

from .fake_enforcer import FakeEnforcer, instance
from .test_api import SPEC_YAML, YAML, async_test, error_of

ADMIN, ACME, GLOBEX = "admin-token", "acme-token", "globex-token"
TOKENS = {ACME: "acme", GLOBEX: "globex"}


def two_tenants() -> FakeEnforcer:
    fake = FakeEnforcer()
    for name, tenant in (("shop", "acme"), ("ledger", "globex"), ("local", "system")):
        fake.apps[name] = AppRecord(name, "1", tenant, AppSource.CONTROL, {"name": name}, 0.0)
        fake.instance_list.append(dataclasses.replace(instance(f"{name}.web.0"), tenant=tenant))
        fake.log_chunks[(f"{name}.web.0", "main")] = [f"{name} log\n".encode()]
        fake.emit("container.started", f"{name}.web.0/main started", app=name, tenant=tenant)
    fake.emit("app.applied", "ledger applied", app="ledger")  # no tenant: found by its app
    fake.emit("runtime.available", "the container runtime is available again")
    return fake


@asynccontextmanager
async def api(fake: FakeEnforcer, **kwargs: Any) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with TestClient(TestServer(make_app(fake, tenant_tokens=TOKENS, **kwargs))) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@async_test
async def test_a_tenant_token_lists_only_its_tenants_applications_and_instances() -> None:
    async with api(two_tenants(), token=ADMIN) as client:
        apps = await (await client.get("/v1/applications", headers=bearer(ACME))).json()
        assert [a["name"] for a in apps["applications"]] == ["shop"]
        inst = await (await client.get("/v1/instances", headers=bearer(ACME))).json()
        assert [i["id"] for i in inst["instances"]] == ["shop.web.0"]
        apps = await (await client.get("/v1/applications", headers=bearer(ADMIN))).json()
        assert sorted(a["name"] for a in apps["applications"]) == ["ledger", "local", "shop"]


@async_test
async def test_another_tenants_things_answer_exactly_like_things_that_do_not_exist() -> None:
    async with api(two_tenants(), token=ADMIN) as client:
        for path, missing in (
            ("/v1/applications/ledger", "/v1/applications/nothing"),
            ("/v1/instances/ledger.web.0/logs", "/v1/instances/nothing.web.0/logs"),
        ):
            other = await client.get(path, headers=bearer(ACME))
            absent = await client.get(missing, headers=bearer(ACME))
            assert other.status == absent.status == 404
            other_error, absent_error = await error_of(other), await error_of(absent)
            assert other_error["code"] == "not-found"
            assert other_error["message"].replace("ledger", "nothing") == absent_error["message"]
        response = await client.delete("/v1/applications/ledger", headers=bearer(ACME))
        assert response.status == 404
        assert (await client.get("/v1/applications/ledger", headers=bearer(GLOBEX))).status == 200


@async_test
async def test_a_tenant_reads_its_logs_removes_its_apps_and_follows_its_events() -> None:
    fake = two_tenants()
    async with api(fake, token=ADMIN) as client:
        logs = await client.get("/v1/instances/shop.web.0/logs", headers=bearer(ACME))
        assert await logs.read() == b"shop log\n"
        events = await client.get("/v1/events", headers=bearer(GLOBEX))
        lines = [json.loads(line) for line in (await events.text()).splitlines()]
        assert [e["message"] for e in lines] == ["ledger.web.0/main started", "ledger applied"]
        response = await client.delete("/v1/applications/shop", headers=bearer(ACME))
        assert response.status == 204
        assert fake.removed == [("shop", False)]


@async_test
async def test_a_tenant_token_cannot_apply_site_local_apps_or_read_site_metrics() -> None:
    async with api(two_tenants(), token=ADMIN) as client:
        response = await client.put(
            "/v1/applications/vision", data=SPEC_YAML, headers={**YAML, **bearer(ACME)}
        )
        assert response.status == 403
        assert (await error_of(response))["code"] == "forbidden"
        response = await client.get("/v1/metrics", headers=bearer(ACME))
        assert response.status == 403
        response = await client.post("/v1/enrollment", json={"bundle": "b"}, headers=bearer(ACME))
        assert response.status == 403
        assert (await client.get("/v1/health", headers=bearer(ACME))).status == 200
        response = await client.put(
            "/v1/applications/vision", data=SPEC_YAML, headers={**YAML, **bearer(ADMIN)}
        )
        assert response.status == 201


@async_test
async def test_tcp_needs_a_token_and_a_wrong_one_is_refused_on_the_socket_too() -> None:
    async with api(two_tenants(), token=ADMIN) as client:
        assert (await client.get("/v1/applications")).status == 401
        assert (await client.get("/v1/applications", headers=bearer("guess"))).status == 401
    async with api(two_tenants(), require_token=False) as client:  # the socket
        apps = await (await client.get("/v1/applications")).json()
        assert len(apps["applications"]) == 3
        assert (await client.get("/v1/applications", headers=bearer("guess"))).status == 401
        apps = await (await client.get("/v1/applications", headers=bearer(GLOBEX))).json()
        assert [a["name"] for a in apps["applications"]] == ["ledger"]


@async_test
async def test_the_unix_socket_honours_tenant_tokens_through_the_client(tmp_path: Path) -> None:
    path = tmp_path / "enforcer.sock"
    server = await serve(two_tenants(), path, tenant_tokens=TOKENS)
    try:
        tenant = Client(path, token=ACME)
        apps = await asyncio.to_thread(tenant.applications)
        assert [a["name"] for a in apps] == ["shop"]
        with pytest.raises(ClientError):
            await asyncio.to_thread(tenant.application, "ledger")
        admin = Client(path)
        assert len(await asyncio.to_thread(admin.applications)) == 3
    finally:
        await server.close()


def test_tenant_tokens_come_from_the_config_and_the_state_directory(tmp_path: Path) -> None:
    (tmp_path / "acme.token").write_text("acme-secret\n")
    tokens_dir = tmp_path / "state" / "tenant-tokens"
    tokens_dir.mkdir(parents=True)
    (tokens_dir / "globex").write_text("globex-secret\n")
    (tokens_dir / "initech").write_text("same\n")
    (tokens_dir / "umbrella").write_text("same\n")  # one token, two tenants: refused for both
    (tokens_dir / "Not-A-Tenant").write_text("x\n")
    text = (
        f'state-dir = "{tmp_path / "state"}"\n'
        "[api]\n"
        f'tenant-tokens = {{ acme = "@{tmp_path / "acme.token"}", hooli = "@/nonexistent" }}\n'
    )
    config: EnforcerConfig = parse_config(text, tmp_path / "enforcer.toml")
    assert load_tenant_tokens(config) == {"acme-secret": "acme", "globex-secret": "globex"}
