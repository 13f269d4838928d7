"""An overloaded control turns sites' work away with 503 and Retry-After, parks long-polls and
keeps serving operators (a real `edge-control serve --max-concurrent 1`); its listener hands
out TLS handshakes a few at a time and closes connections past its budget at once."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from control.api.listener import GatedTLSSite
from control.pki import load_or_create_authority
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


COUNTED = web.AppKey("counted", list[str])  # the names the listener counted


async def gated_listener(
    root: Path, open_files: int, handshakes: int, stale_after: float = 30.0
) -> tuple[web.AppRunner, GatedTLSSite, ssl.SSLContext]:
    """Control's own listener (`GatedTLSSite`) with its TLS, serving GET /ok, on loopback."""
    authority = load_or_create_authority(root)
    authority.ensure_server_cert(["127.0.0.1"])

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    counted: list[str] = []
    app[COUNTED] = counted
    runner = web.AppRunner(app)
    await runner.setup()
    site = GatedTLSSite(
        runner,
        "127.0.0.1",
        0,
        ssl_context=authority.server_ssl_context(),
        open_files=open_files,
        handshakes=handshakes,
        handshake_range=(handshakes, handshakes),
        count=counted.append,
        stale_after=stale_after,
    )
    await site.start()
    return runner, site, ssl.create_default_context(cafile=str(root / "ca.pem"))


def test_a_crowd_of_new_connections_is_handshaken_a_few_at_a_time_and_all_served() -> None:
    root = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))

    async def main() -> None:
        runner, site, context = await gated_listener(root, 20_000, handshakes=4)
        most = 0
        done = asyncio.Event()

        async def watch() -> None:
            nonlocal most
            while not done.is_set():
                most = max(most, site.gate.handshaking)
                await asyncio.sleep(0)

        async def client() -> int:
            connector = aiohttp.TCPConnector(ssl=context, force_close=True)
            async with (
                aiohttp.ClientSession(connector=connector) as s,
                s.get(f"https://127.0.0.1:{site.port}/ok") as r,
            ):
                await r.read()
                return r.status

        watcher = asyncio.create_task(watch())
        try:
            statuses = await asyncio.gather(*(client() for _ in range(150)))
        finally:
            done.set()
            await watcher
            await runner.cleanup()
        assert statuses == [200] * 150
        assert 1 <= most <= 4  # never more handshakes at once than the slots
        assert site.gate.refused == 0

    try:
        run(main())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_past_its_connection_budget_control_closes_new_connections_at_once() -> None:
    root = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))

    async def main() -> None:
        runner, site, context = await gated_listener(root, 266 + 128, handshakes=4)
        assert site.gate.budget == 10
        held = []
        try:
            for _ in range(10):  # ten idle, kept-alive connections: the whole budget
                held.append(
                    await asyncio.open_connection(
                        "127.0.0.1", site.port, ssl=context, server_hostname="127.0.0.1"
                    )
                )
            started = time.monotonic()
            with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
                await asyncio.open_connection(
                    "127.0.0.1", site.port, ssl=context, server_hostname="127.0.0.1"
                )
            assert time.monotonic() - started < 2.0  # closed at once, not left to time out
            assert site.gate.refused == 1
            _, writer = held.pop()
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0.2)
            reader, writer = await asyncio.open_connection(  # a freed place is taken again
                "127.0.0.1", site.port, ssl=context, server_hostname="127.0.0.1"
            )
            writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200")
            writer.close()
        finally:
            for _, writer in held:
                writer.close()
            await runner.cleanup()

    try:
        run(main())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_connection_left_waiting_past_its_clients_timeout_is_closed_without_a_handshake() -> None:
    root = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))

    async def main() -> None:
        runner, site, context = await gated_listener(root, 20_000, handshakes=1, stale_after=0.5)
        counted = runner.app[COUNTED]
        try:
            # a peer that never says hello holds the only handshake slot ...
            _, silent = await asyncio.open_connection("127.0.0.1", site.port)
            await asyncio.sleep(0.1)
            # ... while a TLS client waits behind it longer than the gate keeps it
            late = asyncio.create_task(
                asyncio.open_connection(
                    "127.0.0.1", site.port, ssl=context, server_hostname="127.0.0.1"
                )
            )
            await asyncio.sleep(0.8)
            silent.close()
            with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
                await asyncio.wait_for(late, 5)
            assert counted.count("connections_stale_total") == 1
            assert counted.count("tls_handshakes_started_total") == 1  # the silent one only
            assert (await fetch_ok(site.port, context)) == 200  # and the next is served
        finally:
            await runner.cleanup()

    try:
        run(main())
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def fetch_ok(port: int, context: ssl.SSLContext) -> int:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as s,
        s.get(f"https://127.0.0.1:{port}/ok") as r,
    ):
        await r.read()
        return r.status
