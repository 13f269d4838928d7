"""The simulated sites of the fleet benches, and the worker process that runs a slice of them.

A worker (`python -m bench.bench_fleet --worker DIR --port PORT`) enrolls its slice of the
fleet with the enforcer's own `enroll`, then runs each site either as a `LightSite` (one
hand-rolled mutual-TLS connection per site, so that 10,000 fit on a small machine; it
reconnects with the enforcer's own backoff) or as a `RealSite`: the enforcer's own
`SyncClient`, backoff, outbox and all. The main process drives it over a pipe, one JSON line
each way (`bench.fleet_sites.Worker`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import resource
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from control.server import shrink_tls_read_buffers
from enforcer.link.backoff import Backoff
from enforcer.link.enrollment import SiteIdentity, enroll, load_site_identity
from enforcer.link.sync import POLL_WAIT, SyncClient

NOFILE = 262_144  # sites x connections, at control and in the workers


def raise_nofile() -> int:
    """Raise this process's open-file limit (root may raise the hard one); the new soft one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (max(NOFILE, hard), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return limit
        except (ValueError, OSError):
            continue
    return hard


class LightSite:
    """One site: a mutual-TLS connection, long-polls by revision, a status push per change."""

    def __init__(self, identity: SiteIdentity, host: str, port: int) -> None:
        self.identity = identity
        self.host, self.port = host, port
        self.context = identity.ssl_context()
        self.revision = 0
        self.seq = 0
        self.seen: dict[str, float] = {}  # app version -> when this site first had it
        self.changed: asyncio.Event | None = None
        self.drops = 0  # connections lost (a long-poll or push cut off)
        self.marked = 0  # `drops` at the worker's last "mark"

    def _request(self, method: str, path: str, body: bytes = b"") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: */*\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return head.encode() + b"\r\n" + body

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = await reader.readexactly(length) if length else b""
        return status, body

    async def run(self, handshakes: asyncio.Semaphore) -> None:
        backoff = Backoff()  # the enforcer's own pacing: full jitter, a short cap
        while True:
            opened: asyncio.StreamWriter | None = None
            try:
                async with handshakes:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port, ssl=self.context), 60
                    )
                opened = writer
                backoff.reset()
                while True:
                    path = f"/v1/sync/desired?revision={self.revision}&wait={int(POLL_WAIT)}"
                    writer.write(self._request("GET", path))
                    status, body = await self._response(reader)
                    if status == 200:
                        self._apply(json.loads(body), time.time())
                        await self._push(reader, writer)
                    elif status != 304:
                        await asyncio.sleep(2)
            except (
                OSError,
                ssl.SSLError,
                asyncio.IncompleteReadError,
                TimeoutError,
                ValueError,
                asyncio.LimitOverrunError,
            ):
                if opened is not None:  # a connection it had is gone
                    self.drops += 1
                    opened.close()
                await asyncio.sleep(backoff.next())

    def _apply(self, doc: dict[str, Any], now: float) -> None:
        self.revision = doc["revision"]
        for app in doc["applications"]:
            self.seen.setdefault(app["version"], now)
        if self.changed is not None:
            self.changed.set()

    async def _push(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.seq += 1
        status = {
            "revision": self.revision,
            "instances": [
                {
                    "id": "fleet.main.0",
                    "app": "fleet",
                    "service": "main",
                    "host": "h",
                    "state": "running",
                    "ready": True,
                    "restarts": 0,
                }
            ],
        }
        body = json.dumps({"seq": self.seq, "status": status, "events": []}).encode()
        writer.write(self._request("POST", "/v1/sync/status", body))
        code, answer = await self._response(reader)
        if code == 409:
            self.seq = json.loads(answer)["error"]["expected"] - 1


class RealSite:
    """One site run by the enforcer's own `SyncClient` (its defaults: poll wait, backoff)."""

    def __init__(self, identity: SiteIdentity, state_dir: Path) -> None:
        self.revision = 0
        self.seen: dict[str, float] = {}  # app version -> when this site first had it
        self.changed: asyncio.Event | None = None
        self.drops = self.marked = 0  # the client keeps its connections to itself
        self.client = SyncClient(identity, on_desired=self._on_desired, state_dir=state_dir)

    async def _on_desired(self, revision: int, applications: list[dict[str, Any]]) -> None:
        now = time.time()
        self.revision = revision
        for app in applications:
            self.seen.setdefault(str(app["version"]), now)
        self.client.set_status([running_instance(str(a["version"])) for a in applications])
        if self.changed is not None:
            self.changed.set()

    async def run(self, handshakes: asyncio.Semaphore) -> None:
        await self.client.run()  # no handshake limit: the real client as it is


def running_instance(version: str) -> dict[str, Any]:
    return {
        "id": "fleet.main.0",
        "app": "fleet",
        "version": version,
        "service": "main",
        "host": "h",
        "state": "running",
        "ready": True,
        "restarts": 0,
    }


async def commands() -> AsyncIterator[dict[str, Any]]:
    """A worker's commands from the main process, one JSON line each on stdin (this process's
    open-files limit raised and TLS read buffers shrunk first: thousands of sites live here)."""
    raise_nofile()
    shrink_tls_read_buffers()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**28)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield json.loads(line)


def reply(doc: dict[str, Any]) -> None:
    """A worker's answer to its command, one JSON line on stdout."""
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def worker_main(root: Path, host: str, port: int) -> None:
    """Answer the main process's commands, one JSON line each way."""
    logging.getLogger("enforcer.link.sync").setLevel(logging.ERROR)  # 10,000 sites' warnings
    sites: list[LightSite | RealSite] = []
    tasks: list[asyncio.Task[None]] = []
    changed = asyncio.Event()

    async def until(done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return

    async for command in commands():
        if command["cmd"] == "enroll":
            reply(await enroll_slice(root, command["bundles"], command["concurrency"]))
        elif command["cmd"] == "sync":
            for name in command["sites"]:
                identity = load_site_identity(root / name)
                assert identity is not None
                site: LightSite | RealSite = (
                    RealSite(identity, root / name)
                    if command.get("client") == "real"
                    else LightSite(identity, host, port)
                )
                site.changed = changed
                sites.append(site)
            handshakes = asyncio.Semaphore(64)
            started = time.monotonic()
            tasks = [asyncio.create_task(s.run(handshakes)) for s in sites]
            await until(lambda: all(s.revision for s in sites), command.get("timeout", 1e9))
            reply({"seconds": time.monotonic() - started})
        elif command["cmd"] == "expect":
            version, t0 = command["version"], command["t0"]
            await until(
                lambda v=version: all(v in s.seen for s in sites), command.get("timeout", 1e9)
            )
            latencies = [s.seen[version] - t0 for s in sites if version in s.seen]
            dropped = sum(s.drops > s.marked for s in sites)  # lost a connection since "mark"
            reply(
                {"latencies": latencies, "missing": len(sites) - len(latencies), "dropped": dropped}
            )
        elif command["cmd"] == "mark":
            for s in sites:
                s.marked = s.drops
            reply({"sites": len(sites)})
        elif command["cmd"] == "stop":
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for s in sites:
                if isinstance(s, RealSite):
                    s.client.close()
            reply({"stopped": True})
            return


async def enroll_slice(root: Path, bundles: list[str], concurrency: int) -> dict[str, Any]:
    """Enroll every bundle's site under `root`, `concurrency` at a time."""
    limit = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one(bundle: str) -> None:
        async with limit:
            name = json.loads(_b64(bundle))["site"]
            try:
                await enroll(bundle, root / name)
            except Exception as e:
                errors.append(f"{name}: {e}")

    started = time.monotonic()
    await asyncio.gather(*(one(b) for b in bundles))
    return {"seconds": time.monotonic() - started, "errors": errors[:5], "failed": len(errors)}


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
