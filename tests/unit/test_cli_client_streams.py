"""The CLI's client: a followed stream has no read timeout, a plain call has one."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from enforcer.cli.client import Client, EnforcerUnreachable

QUIET_S = 1.5
TIMEOUT_S = 0.5


@pytest.fixture()
def quiet_daemon() -> Iterator[Path]:
    """A local API on a Unix socket whose answers stay silent for QUIET_S before each line."""

    async def logs(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first\n")
        await asyncio.sleep(QUIET_S)
        await response.write(b"second\n")
        await asyncio.sleep(QUIET_S * 10)
        return response

    async def instances(request: web.Request) -> web.Response:
        await asyncio.sleep(QUIET_S)
        return web.json_response({"instances": []})

    socket_path = Path(tempfile.mkdtemp(prefix="cli-")) / "api.sock"
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/v1/instances/{id}/logs", logs)
    app.router.add_get("/v1/instances", instances)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.UnixSite(runner, str(socket_path)).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield socket_path
    asyncio.run_coroutine_threadsafe(_stop(runner), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


async def _stop(runner: web.AppRunner) -> None:
    # the handlers still asleep first: a cleanup would wait for them (aiohttp 3.9+)
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await runner.cleanup()


def test_a_followed_stream_outlasts_the_clients_read_timeout(quiet_daemon: Path) -> None:
    chunks = Client(quiet_daemon, timeout=TIMEOUT_S).logs("web.web.0", follow=True)
    try:
        received = b""
        for chunk in chunks:
            received += chunk
            if b"second" in received:
                break
        assert received == b"first\nsecond\n"
    finally:
        chunks.close()


def test_a_plain_call_gives_up_after_the_read_timeout(quiet_daemon: Path) -> None:
    with pytest.raises(EnforcerUnreachable, match=r"no answer within 0\.5s"):
        Client(quiet_daemon, timeout=TIMEOUT_S).instances()
