"""The local HTTP API (enforcer.api) over a fake enforcer, through aiohttp's test client."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from enforcer.api import make_app, serve
from enforcer.api.openapi import ERROR_CODES, openapi_document
from enforcer.api.routes import ROUTES
from enforcer.facade import InstanceState

from .fake_enforcer import INVALID_SPEC_MESSAGE, FakeEnforcer, instance

SPEC_YAML = b"""\
name: vision
version: "1.0"
services:
  - name: detector
    containers: [{name: main, image: busybox}]
"""
SPEC_JSON = json.dumps(
    {
        "name": "vision",
        "version": "1.0",
        "services": [{"name": "detector", "containers": [{"name": "main", "image": "busybox"}]}],
    }
).encode()
YAML = {"Content-Type": "application/yaml"}


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout=30))

    return run


@asynccontextmanager
async def api(fake: FakeEnforcer | None = None, **kwargs: Any) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with TestClient(TestServer(make_app(fake or FakeEnforcer(), **kwargs))) as client:
        yield client


async def error_of(response: aiohttp.ClientResponse) -> dict[str, str]:
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] in ERROR_CODES
    assert ERROR_CODES[body["error"]["code"]] == response.status
    return dict(body["error"])


# --- simple reads -------------------------------------------------------------------------------


@async_test
async def test_health_is_200_when_healthy_and_503_when_not() -> None:
    fake = FakeEnforcer()
    async with api(fake) as client:
        response = await client.get("/v1/health")
        assert response.status == 200
        assert (await response.json())["healthy"] is True
        fake.healthy = False
        response = await client.get("/v1/health")
        assert response.status == 503
        body = await response.json()
        assert body["healthy"] is False
        assert body["runtime"].startswith("unavailable")


@async_test
async def test_host_and_site_are_served_as_json() -> None:
    fake = FakeEnforcer()
    async with api(fake) as client:
        response = await client.get("/v1/host")
        assert response.status == 200
        assert await response.json() == fake.host_record
        response = await client.get("/v1/site")
        assert (await response.json())["name"] == "store-042"


@async_test
async def test_instances_are_listed_with_their_state() -> None:
    fake = FakeEnforcer()
    fake.instance_list = [
        instance("vision.detector.0"),
        instance("vision.detector.1", InstanceState.BACKOFF, last_exit_code=1, next_retry=5.0),
    ]
    async with api(fake) as client:
        body = await (await client.get("/v1/instances")).json()
    assert [i["id"] for i in body["instances"]] == ["vision.detector.0", "vision.detector.1"]
    assert body["instances"][1]["state"] == "backoff"
    assert body["instances"][1]["last_exit_code"] == 1
    assert body["instances"][0]["containers"][0]["name"] == "main"


@async_test
async def test_metrics_are_prometheus_text() -> None:
    async with api() as client:
        response = await client.get("/v1/metrics")
        assert response.status == 200
        content_type = response.headers["Content-Type"]
        assert content_type.startswith("text/plain; version=0.0.4")
        assert "edgeward_instances 2" in await response.text()


# --- applications -------------------------------------------------------------------------------


@async_test
async def test_put_creates_then_reports_unchanged_then_changed() -> None:
    fake = FakeEnforcer()
    async with api(fake) as client:
        response = await client.put("/v1/applications/vision", data=SPEC_YAML, headers=YAML)
        assert response.status == 201
        body = await response.json()
        assert body["name"] == "vision"
        assert body["source"] == "local"
        assert body["changed"] is True
        assert body["spec"]["services"][0]["name"] == "detector"

        response = await client.put("/v1/applications/vision", data=SPEC_YAML, headers=YAML)
        assert response.status == 200
        assert (await response.json())["changed"] is False

        changed = SPEC_YAML.replace(b'"1.0"', b'"1.1"')
        response = await client.put("/v1/applications/vision", data=changed, headers=YAML)
        assert response.status == 200
        body = await response.json()
        assert body["changed"] is True
        assert body["version"] == "1.1"

        listed = await (await client.get("/v1/applications")).json()
        assert [a["name"] for a in listed["applications"]] == ["vision"]
        one = await (await client.get("/v1/applications/vision")).json()
        assert one["version"] == "1.1"


@async_test
async def test_put_accepts_json() -> None:
    fake = FakeEnforcer()
    async with api(fake) as client:
        response = await client.put(
            "/v1/applications/vision",
            data=SPEC_JSON,
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 201
    assert fake.apps["vision"].document["version"] == "1.0"


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"name": "vision",, }', "application/json", "JSON syntax error at line 1, column 19"),
        (b"name: vision\n  bad: [\n", "application/yaml", "YAML syntax error at line"),
        (b"- just\n- a list\n", "application/yaml", "must be a mapping"),
        (b"", "application/yaml", "empty"),
        (b"name: a\nname: b\n", "application/yaml", 'the key "name" is given twice'),
        (b"\xff\xfe", "application/yaml", "not UTF-8"),
    ],
)
def test_a_body_that_is_not_a_document_is_400_invalid_body(
    body: bytes, content_type: str, expected: str
) -> None:
    @async_test
    async def check() -> None:
        fake = FakeEnforcer()
        async with api(fake) as client:
            response = await client.put(
                "/v1/applications/vision", data=body, headers={"Content-Type": content_type}
            )
            assert response.status == 400
            error = await error_of(response)
        assert error["code"] == "invalid-body"
        assert expected in error["message"]
        assert fake.apps == {}

    check()


@async_test
async def test_other_media_types_are_415() -> None:
    async with api() as client:
        response = await client.put(
            "/v1/applications/vision", data=SPEC_YAML, headers={"Content-Type": "text/html"}
        )
        assert response.status == 415
        assert (await error_of(response))["code"] == "unsupported-media-type"


@async_test
async def test_a_body_without_content_type_is_read_as_yaml() -> None:
    fake = FakeEnforcer()
    async with api(fake) as client:
        response = await client.put("/v1/applications/vision", data=SPEC_YAML)
        assert response.status == 201


@async_test
async def test_a_body_over_max_body_is_413() -> None:
    fake = FakeEnforcer()
    async with api(fake, max_body=1000) as client:
        big = SPEC_YAML + b"#" * 2000 + b"\n"
        response = await client.put("/v1/applications/vision", data=big, headers=YAML)
        assert response.status == 413
        assert (await error_of(response))["code"] == "body-too-large"

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for _ in range(10):
                yield b"#" * 200 + b"\n"

        response = await client.put("/v1/applications/vision", data=chunked(), headers=YAML)
        assert response.status == 413
        # the server is fine afterwards
        response = await client.put("/v1/applications/vision", data=SPEC_YAML, headers=YAML)
        assert response.status == 201


@async_test
async def test_the_spec_name_must_be_the_name_in_the_path() -> None:
    fake = FakeEnforcer()
    async with api(fake) as client:
        response = await client.put("/v1/applications/other", data=SPEC_YAML, headers=YAML)
        assert response.status == 400
        error = await error_of(response)
        assert error["code"] == "name-mismatch"
        assert '"vision"' in error["message"]
        assert '"other"' in error["message"]
        response = await client.put("/v1/applications/vision", data=b"version: '1'\n", headers=YAML)
        assert response.status == 400
        assert "no name" in (await error_of(response))["message"]
    assert fake.apps == {}


@async_test
async def test_an_invalid_spec_is_422_with_every_error_line() -> None:
    async with api() as client:
        response = await client.put(
            "/v1/applications/vision", data=SPEC_YAML + b"invalid: true\n", headers=YAML
        )
        assert response.status == 422
        error = await error_of(response)
    assert error["code"] == "invalid-spec"
    assert error["message"] == INVALID_SPEC_MESSAGE
    assert len(error["message"].splitlines()) == 2


@async_test
async def test_an_application_owned_by_control_is_409() -> None:
    fake = FakeEnforcer()
    fake.control_owned.add("vision")
    async with api(fake) as client:
        response = await client.put("/v1/applications/vision", data=SPEC_YAML, headers=YAML)
        assert response.status == 409
        assert (await error_of(response))["code"] == "conflict"


@async_test
async def test_unknown_applications_are_404() -> None:
    async with api() as client:
        for method in ("GET", "DELETE"):
            response = await client.request(method, "/v1/applications/nope")
            assert response.status == 404
            error = await error_of(response)
            assert error["code"] == "not-found"
            assert "nope" in error["message"]


@async_test
async def test_delete_removes_and_purge_is_passed_on() -> None:
    fake = FakeEnforcer()
    async with api(fake) as client:
        await client.put("/v1/applications/vision", data=SPEC_YAML, headers=YAML)
        response = await client.delete("/v1/applications/vision", params={"purge": "true"})
        assert response.status == 204
        assert fake.removed == [("vision", True)]
        assert fake.apps == {}
        await client.put("/v1/applications/vision", data=SPEC_YAML, headers=YAML)
        response = await client.delete("/v1/applications/vision", params={"purge": "perhaps"})
        assert response.status == 400
        assert (await error_of(response))["code"] == "invalid-parameter"
        response = await client.delete("/v1/applications/vision")
        assert response.status == 204
        assert fake.removed[-1] == ("vision", False)


# --- streams ------------------------------------------------------------------------------------


def with_logs(fake: FakeEnforcer) -> FakeEnforcer:
    fake.instance_list = [instance("vision.detector.0")]
    fake.log_chunks[("vision.detector.0", "main")] = [b"one\n", b"two\n", b"three\n"]
    fake.log_chunks[("vision.detector.0", "sidecar")] = [b"side\n"]
    return fake


@async_test
async def test_logs_are_streamed_as_chunked_text() -> None:
    fake = with_logs(FakeEnforcer())
    async with api(fake) as client:
        response = await client.get("/v1/instances/vision.detector.0/logs")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert await response.read() == b"one\ntwo\nthree\n"

        response = await client.get("/v1/instances/vision.detector.0/logs", params={"tail": "1"})
        assert await response.read() == b"three\n"
        response = await client.get(
            "/v1/instances/vision.detector.0/logs", params={"container": "sidecar"}
        )
        assert await response.read() == b"side\n"


@async_test
async def test_logs_of_unknown_instances_or_containers_are_404() -> None:
    fake = with_logs(FakeEnforcer())
    async with api(fake) as client:
        response = await client.get("/v1/instances/nope.x.0/logs")
        assert response.status == 404
        assert "nope.x.0" in (await error_of(response))["message"]
        response = await client.get(
            "/v1/instances/vision.detector.0/logs", params={"container": "ghost"}
        )
        assert response.status == 404
        response = await client.get("/v1/instances/vision.detector.0/logs", params={"tail": "-3"})
        assert response.status == 400
        assert (await error_of(response))["code"] == "invalid-parameter"


async def read_until(response: aiohttp.ClientResponse, expected: bytes) -> bytes:
    data = b""
    while expected not in data:
        chunk = await asyncio.wait_for(response.content.readany(), timeout=5)
        assert chunk, f"stream ended before {expected!r}; got {data!r}"
        data += chunk
    return data


@async_test
async def test_logs_follow_keeps_streaming_until_the_client_leaves() -> None:
    fake = with_logs(FakeEnforcer())
    async with api(fake) as client:
        response = await client.get(
            "/v1/instances/vision.detector.0/logs", params={"follow": "true"}
        )
        assert response.status == 200
        assert await read_until(response, b"three\n") == b"one\ntwo\nthree\n"
        assert fake.log_feed is not None
        await fake.log_feed.put(b"four\n")
        assert await read_until(response, b"four\n") == b"four\n"
        assert fake.log_followers == 1
        response.close()  # the client goes away: the server stops reading the logs
        for _ in range(50):
            if fake.log_followers == 0:
                break
            await asyncio.sleep(0.1)
        assert fake.log_followers == 0
        # and the server still answers
        assert (await client.get("/v1/health")).status == 200


@async_test
async def test_events_are_newline_delimited_json_after_since() -> None:
    fake = FakeEnforcer()
    for n in range(3):
        fake.emit("instance.started", f"started {n}", instance=f"vision.detector.{n}")
    async with api(fake) as client:
        response = await client.get("/v1/events")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        lines = (await response.read()).decode().splitlines()
        assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
        assert json.loads(lines[0])["kind"] == "instance.started"

        response = await client.get("/v1/events", params={"since": "2"})
        assert [json.loads(line)["seq"] for line in (await response.text()).splitlines()] == [3]

        response = await client.get("/v1/events", params={"since": "soon"})
        assert response.status == 400
        assert (await error_of(response))["code"] == "invalid-parameter"


@async_test
async def test_events_follow_streams_new_events() -> None:
    fake = FakeEnforcer()
    fake.emit("app.applied", "first")
    async with api(fake) as client:
        response = await client.get("/v1/events", params={"follow": "true", "since": "0"})
        line = await asyncio.wait_for(response.content.readline(), timeout=5)
        assert json.loads(line)["message"] == "first"
        fake.emit("instance.crashed", "second", instance="vision.detector.0")
        line = await asyncio.wait_for(response.content.readline(), timeout=5)
        event = json.loads(line)
        assert event["kind"] == "instance.crashed"
        assert event["seq"] == 2
        response.close()


# --- errors and routing -------------------------------------------------------------------------


@async_test
async def test_unknown_routes_are_404_and_wrong_methods_405_as_json() -> None:
    async with api() as client:
        response = await client.get("/v1/nothing-here")
        assert response.status == 404
        assert (await error_of(response))["code"] == "not-found"
        response = await client.post("/v1/applications/vision", data=b"{}")
        assert response.status == 405
        error = await error_of(response)
        assert error["code"] == "method-not-allowed"
        assert "PUT" in response.headers["Allow"]


@async_test
async def test_an_unexpected_error_is_a_generic_500_and_other_requests_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeEnforcer()
    fake.host_error = RuntimeError("password=hunter2 in /secret/path")
    with caplog.at_level(logging.ERROR, logger="enforcer.api"):
        async with api(fake) as client:
            response = await client.get("/v1/host")
            assert response.status == 500
            error = await error_of(response)
            assert error["code"] == "internal"
            assert "hunter2" not in await response.text()
            assert (await client.get("/v1/site")).status == 200
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)


# --- tokens -------------------------------------------------------------------------------------


@async_test
async def test_with_a_token_every_request_needs_it() -> None:
    async with api(token="s3cret") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            response = await client.get("/v1/health", headers=headers)
            assert response.status == 401
            assert (await error_of(response))["code"] == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        # unknown routes do not tell what exists without the token
        response = await client.get("/v1/nothing-here")
        assert response.status == 401
        response = await client.put("/v1/applications/vision", data=SPEC_YAML, headers=YAML)
        assert response.status == 401
        good = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/v1/health", headers=good)).status == 200
        assert (await client.get("/v1/nothing-here", headers=good)).status == 404


@async_test
async def test_without_a_token_none_is_needed() -> None:
    async with api() as client:
        assert (await client.get("/v1/health")).status == 200


# --- openapi ------------------------------------------------------------------------------------


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/")
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def served_routes(app: web.Application) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource is not None else ""
        routes.setdefault(path, set()).add(route.method.lower())
    return routes


def documented_routes(document: dict[str, Any]) -> dict[str, set[str]]:
    return {
        path: {m for m in item if m in ("get", "put", "delete", "post", "patch")}
        for path, item in document["paths"].items()
    }


def drift(app: web.Application, document: dict[str, Any]) -> list[str]:
    """Every disagreement between the routes served and the routes documented."""
    served, documented = served_routes(app), documented_routes(document)
    out = []
    for path in sorted(set(served) | set(documented)):
        for method in sorted(served.get(path, set()) - documented.get(path, set())):
            out.append(f"served, not documented: {method.upper()} {path}")
        for method in sorted(documented.get(path, set()) - served.get(path, set())):
            out.append(f"documented, not served: {method.upper()} {path}")
    return out


@async_test
async def test_openapi_describes_every_route_with_its_parameters() -> None:
    app = make_app(FakeEnforcer())
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/v1/openapi.json")
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.0")
    assert drift(app, document) == []
    described = documented_routes(document)
    for path, item in document["paths"].items():
        names = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        for method in described[path]:
            names |= {p["name"] for p in item[method].get("parameters", []) if p["in"] == "path"}
            assert item[method]["responses"], (path, method)
        assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}
    for ref in refs(document):
        assert resolve(document, ref) is not None
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]


def test_a_route_served_but_not_documented_or_documented_but_not_served_is_drift() -> None:
    document = openapi_document()
    app = make_app(FakeEnforcer())
    assert drift(app, document) == []
    app.router.add_post("/v1/undocumented", lambda request: web.Response())  # type: ignore[arg-type,return-value]
    del document["paths"]["/v1/metrics"]["get"]
    document["paths"]["/v1/ghost"] = {"get": {"responses": {"200": {"description": "-"}}}}
    assert drift(app, document) == [
        "documented, not served: GET /v1/ghost",
        "served, not documented: GET /v1/metrics",
        "served, not documented: POST /v1/undocumented",
    ]


def test_every_route_of_the_table_is_served_once_by_its_own_handler() -> None:
    app = make_app(FakeEnforcer())
    table = {(r.method, r.path) for r in ROUTES}
    assert len(table) == len(ROUTES)
    served = {(m.upper(), path) for path, methods in served_routes(app).items() for m in methods}
    assert served == table
    assert {r.operation for r in ROUTES} == {
        op["operationId"]
        for item in openapi_document()["paths"].values()
        for key, op in item.items()
        if key != "parameters"
    }


# --- serve() on a unix socket and TCP -----------------------------------------------------------


@async_test
async def test_serve_makes_a_0660_socket_in_a_new_directory_and_removes_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run" / "enforcer.sock"
    server = await serve(FakeEnforcer(), path)
    try:
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
            session.get("http://localhost/v1/health") as response,
        ):
            assert response.status == 200
    finally:
        await server.close()
    assert not path.exists()


@async_test
async def test_serve_replaces_a_stale_socket_but_not_a_live_one(tmp_path: Path) -> None:
    path = tmp_path / "enforcer.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    server = await serve(FakeEnforcer(), path)
    try:
        with pytest.raises(OSError, match="already serves"):
            await serve(FakeEnforcer(), path)
        assert path.exists()
    finally:
        await server.close()


@async_test
async def test_serve_on_tcp_needs_the_token_and_the_socket_does_not(tmp_path: Path) -> None:
    path = tmp_path / "enforcer.sock"
    with pytest.raises(ValueError, match="token"):
        await serve(FakeEnforcer(), path, "127.0.0.1:0")
    server = await serve(FakeEnforcer(), path, "127.0.0.1:0", "s3cret")
    try:
        assert server.tcp_address is not None
        host, port = server.tcp_address
        url = f"http://{host}:{port}/v1/health"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                assert response.status == 401
            async with session.get(url, headers={"Authorization": "Bearer s3cret"}) as response:
                assert response.status == 200
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
            session.get("http://localhost/v1/health") as response,
        ):
            assert response.status == 200
    finally:
        await server.close()


@async_test
async def test_closing_the_server_ends_following_streams(tmp_path: Path) -> None:
    fake = FakeEnforcer()
    fake.emit("app.applied", "first")
    path = tmp_path / "enforcer.sock"
    server = await serve(fake, path)
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session:
        response = await session.get("http://localhost/v1/events?follow=true")
        await asyncio.wait_for(response.content.readline(), timeout=5)
        assert fake.event_followers == 1
        started = time.monotonic()
        await asyncio.wait_for(server.close(), timeout=10)
        assert time.monotonic() - started < 5
        assert fake.event_followers == 0
        response.close()


def test_app_factory_returns_an_aiohttp_application() -> None:
    assert isinstance(make_app(FakeEnforcer(), token="t", max_body=10), web.Application)


# --- enrollment of the running enforcer ---------------------------------------------------------


@async_test
async def test_post_enrollment_hands_the_bundle_over_and_a_second_is_409() -> None:
    fake = FakeEnforcer()
    async with api(fake) as client:
        response = await client.post("/v1/enrollment", json={"bundle": " b1 \n"})
        assert response.status == 200
        assert await response.json() == {"site": "store-042", "control": "https://c"}
        assert fake.enrolled_bundles == ["b1"]
        response = await client.post("/v1/enrollment", json={"bundle": "b2"})
        assert response.status == 409
        error = await error_of(response)
        assert error["message"].startswith("this site is enrolled already")
        assert fake.enrolled_bundles == ["b1"]


@async_test
async def test_a_bad_enrollment_request_is_400_415_or_422_with_a_message() -> None:
    async with api() as client:
        for body, code in ((b"{}", "invalid-body"), (b"[1", "invalid-body")):
            response = await client.post(
                "/v1/enrollment", data=body, headers={"Content-Type": "application/json"}
            )
            assert response.status == 400 and (await error_of(response))["code"] == code
        response = await client.post("/v1/enrollment", data=b"x", headers=YAML)
        assert response.status == 415
        response = await client.post("/v1/enrollment", json={"bundle": "expired"})
        assert response.status == 422
        error = await error_of(response)
        assert error == {
            "code": "enrollment-failed",
            "message": "enrollment failed: control refused: the bundle has expired",
        }
