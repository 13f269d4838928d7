"""The local API's join routes (enforcer.api.site) over a fake enforcer."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from enforcer.api import make_app
from enforcer.facade import Conflict
from enforcer.site.kv.base import KVError

from .fake_enforcer import FakeEnforcer
from .test_api import error_of


class JoiningEnforcer(FakeEnforcer):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, Any, Any]] = []

    async def site_join_bundle(self, role: str, expires: float) -> dict[str, Any]:
        self.asked.append(("bundle", role, expires))
        return {"bundle": "b", "role": role, "expires": 1, "warnings": []}

    async def site_join(self, bundle: str, advertise: str) -> dict[str, Any]:
        self.asked.append(("join", bundle, advertise))
        if bundle == "used":
            raise KVError("cannot join the site: this join bundle was used already")
        return {"site": "s", "host": "h", "role": "worker", "warnings": []}

    async def site_leave(self) -> dict[str, Any]:
        self.asked.append(("leave", None, None))
        if len([a for a in self.asked if a[0] == "leave"]) == 1:
            raise KVError("cannot leave the site: host h is the site's last controller")
        if len([a for a in self.asked if a[0] == "leave"]) == 2:
            raise Conflict("this host is in no multi-host site: there is nothing to leave")
        return {"site": "s", "host": "h", "role": "worker", "warnings": []}


def run(enforcer: FakeEnforcer, check: Any) -> None:
    async def main() -> None:
        async with TestClient(TestServer(make_app(enforcer))) as client:
            await check(client)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_join_bundle_takes_a_role_and_a_duration() -> None:
    fake = JoiningEnforcer()

    async def check(client: TestClient) -> None:  # type: ignore[type-arg]
        answer = await client.post("/v1/site/join-bundle", json={"role": "worker", "expires": "2h"})
        assert answer.status == 200 and (await answer.json())["bundle"] == "b"
        answer = await client.post("/v1/site/join-bundle", json={"expires": "soon"})
        assert answer.status == 400 and "expires:" in (await error_of(answer))["message"]
        answer = await client.post("/v1/site/join-bundle", json={"expires": "0s"})
        assert answer.status == 400 and "more than 0s" in (await error_of(answer))["message"]

    run(fake, check)
    assert fake.asked == [("bundle", "worker", 7200.0)]


def test_join_answers_422_with_the_reason_and_400_without_a_bundle() -> None:
    fake = JoiningEnforcer()

    async def check(client: TestClient) -> None:  # type: ignore[type-arg]
        answer = await client.post("/v1/site/join", json={"bundle": "used", "advertise": "1.2.3.4"})
        error = await error_of(answer)
        assert (answer.status, error["code"]) == (422, "join-failed")
        assert "used already" in error["message"]
        answer = await client.post("/v1/site/join", json={})
        assert answer.status == 400 and 'needs "bundle"' in (await error_of(answer))["message"]
        answer = await client.post(
            "/v1/site/join", data=b"x", headers={"Content-Type": "text/plain"}
        )
        assert answer.status == 415

    run(fake, check)
    assert fake.asked == [("join", "used", "1.2.3.4")]


def test_an_enforcer_that_cannot_join_answers_409() -> None:
    async def check(client: TestClient) -> None:  # type: ignore[type-arg]
        answer = await client.post("/v1/site/join", json={"bundle": "b"})
        assert answer.status == 409
        assert "cannot join multi-host sites" in (await error_of(answer))["message"]

    run(FakeEnforcer(), check)


def test_leave_answers_422_when_refused_409_outside_a_site_and_200_when_left() -> None:
    fake = JoiningEnforcer()

    async def check(client: TestClient) -> None:  # type: ignore[type-arg]
        answer = await client.post("/v1/site/leave")
        error = await error_of(answer)
        assert (answer.status, error["code"]) == (422, "leave-failed")
        assert "last controller" in error["message"]
        answer = await client.post("/v1/site/leave")
        assert answer.status == 409 and "no multi-host site" in (await error_of(answer))["message"]
        answer = await client.post("/v1/site/leave")
        assert answer.status == 200 and (await answer.json())["host"] == "h"

    run(fake, check)
