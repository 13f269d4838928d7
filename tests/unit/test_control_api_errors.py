"""Control's HTTP layer in-process: JSON errors, load shedding with Retry-After, body limits."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from control.api.app import MAX_BODY, ControlAPI
from control.model import Unauthorized
from control.service.core import Metrics


class FakeTenants:
    async def authenticate(self, token: str | None) -> Any:
        raise Unauthorized("the token is not valid")


class FakeService:
    """Just enough of ControlService for requests that never reach it."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.tenants = FakeTenants()


def with_api(max_concurrent: int, body: Callable[[ClientSession, str], Awaitable[None]]) -> None:
    async def main() -> None:
        api = ControlAPI(FakeService(), max_concurrent=max_concurrent)  # type: ignore[arg-type]
        server = TestServer(api.app())
        await server.start_server()
        try:
            async with ClientSession() as session:
                await body(session, str(server.make_url("")))
        finally:
            await server.close()

    asyncio.run(main())


def test_status_batches_past_the_limit_get_503_with_retry_after() -> None:
    async def body(session: ClientSession, url: str) -> None:
        async with session.post(url + "/v1/sync/status", json={"seq": 1}) as r:
            assert r.status == 503
            assert 1 <= int(r.headers["Retry-After"]) <= 5
            assert (await r.json())["error"]["code"] == "overloaded"
        async with session.get(url + "/v1/sites") as r:  # operators are never shed
            assert r.status == 401
            assert (await r.json()) == {
                "error": {"code": "unauthorized", "message": "the token is not valid"}
            }

    with_api(0, body)


def test_unknown_endpoints_and_oversized_bodies_get_json_errors() -> None:
    async def body(session: ClientSession, url: str) -> None:
        async with session.get(url + "/v1/nothing") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not-found"
        async with session.post(
            url + "/v1/enrollment", data=io.BytesIO(b"x" * (MAX_BODY + 1))
        ) as r:
            assert r.status == 413 and (await r.json())["error"]["code"] == "too-large"
        async with session.post(url + "/v1/enrollment", data=b"{not json") as r:
            assert r.status == 422 and "not valid JSON" in (await r.json())["error"]["message"]

    with_api(10, body)


def test_operators_issuing_bundles_are_never_shed_while_enrollments_are() -> None:
    async def body(session: ClientSession, url: str) -> None:
        async with session.post(url + "/v1/enrollment/tokens", json={"site": "s"}) as r:
            assert r.status == 401  # reached the handler: not turned away as busy
        async with session.post(url + "/v1/enrollment", json={}) as r:
            assert r.status == 503 and "Retry-After" in r.headers

    with_api(0, body)


class BrokenTenants:
    async def authenticate(self, token: str | None) -> Any:
        raise RuntimeError("disk on fire at /var/lib/edgeward/control")


def test_an_unexpected_error_is_a_generic_500_with_the_detail_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = FakeService()
    service.tenants = BrokenTenants()  # type: ignore[assignment]

    async def main() -> None:
        server = TestServer(ControlAPI(service).app())  # type: ignore[arg-type]
        await server.start_server()
        try:
            async with ClientSession() as session, session.get(server.make_url("/v1/sites")) as r:
                assert r.status == 500
                error = (await r.json())["error"]
        finally:
            await server.close()
        assert error == {
            "code": "internal",
            "message": "control failed to answer this request; its log has the details",
        }

    with caplog.at_level(logging.ERROR, logger="control.api.app"):
        asyncio.run(main())
    assert "GET /v1/sites failed" in caplog.text and "disk on fire" in caplog.text
    assert service.metrics.counters["http_responses_5xx_total"] == 1
