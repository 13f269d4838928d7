"""An overloaded control turns sites' work away with 503 and Retry-After, parks long-polls and
keeps serving operators (a real `edge-control serve --max-concurrent 1`)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from enforcer.link.enrollment import SiteIdentity, enroll
from tests.support.control import ControlProcess, run


async def site_get(identity: SiteIdentity, path: str) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(identity.url + path, ssl=identity.ssl_context()) as r,
    ):
        body = await r.read()
        return r.status, dict(r.headers), json.loads(body) if body else None


async def site_post(identity: SiteIdentity, path: str, doc: Any) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(identity.url + path, json=doc, ssl=identity.ssl_context()) as r,
    ):
        await r.read()
        return r.status, dict(r.headers)


def test_an_overloaded_control_sheds_site_work_with_retry_after_and_parks_long_polls() -> None:
    root = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))
    control = ControlProcess(root, extra_args=("--max-concurrent", "1"))
    control.start()

    async def main() -> None:
        identity = await enroll(control.bundle("store-1"), root / "site")
        status, _, desired = await site_get(identity, "/v1/sync/desired?revision=0")
        assert status == 200
        revision = desired["revision"]
        # one status batch whose body never finishes holds control's only slot
        _, writer = await asyncio.open_connection(
            "127.0.0.1", control.port, ssl=identity.ssl_context(), server_hostname="127.0.0.1"
        )
        writer.write(
            b"POST /v1/sync/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        await asyncio.sleep(0.3)
        try:
            stale = await site_get(identity, "/v1/sync/desired?revision=0")
            batch = await site_post(identity, "/v1/sync/status", {"seq": 1, "events": []})
            for status, headers in (stale[:2], batch):
                assert status == 503
                assert 1 <= int(headers["Retry-After"]) <= 5
            # a long-poll with nothing new is parked, not turned away
            status, _, _ = await site_get(identity, f"/v1/sync/desired?revision={revision}&wait=1")
            assert status == 304
            sites = await control.call("GET", "/v1/sites")  # operators are never shed
            assert [s["name"] for s in sites["sites"]] == ["store-1"]
            metrics = await control.call("GET", "/v1/metrics")
            assert "edgeward_control_http_shed_total 2" in metrics
        finally:
            writer.close()
            await writer.wait_closed()
        await asyncio.sleep(0.3)
        status, _, _ = await site_get(identity, "/v1/sync/desired?revision=0")
        assert status == 200

    try:
        run(main())
    finally:
        control.stop()
        shutil.rmtree(root, ignore_errors=True)
