"""The simulated fleet of the fleet bench: sites in worker processes, driven over a pipe.

A worker (`python -m bench.bench_fleet --worker DIR --port PORT`) enrolls its slice of the
fleet with the enforcer's own `enroll`, then runs each site either as a `LightSite` (one
hand-rolled mutual-TLS connection per site, so that 10,000 fit on a small machine) or as a
`RealSite`: the enforcer's own `SyncClient`, backoff, outbox and all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import resource
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from control.server import shrink_tls_read_buffers
from enforcer.link.enrollment import SiteIdentity, enroll, load_site_identity
from enforcer.link.sync import POLL_WAIT, SyncClient
from tests.support.control import ControlProcess

ROOT = Path(__file__).resolve().parent.parent
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
        delay = 1.0
        while True:
            try:
                async with handshakes:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port, ssl=self.context), 60
                    )
                delay = 1.0
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
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

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


async def worker_main(root: Path, host: str, port: int) -> None:
    """Answer the main process's commands, one JSON line each way."""
    raise_nofile()
    shrink_tls_read_buffers()
    logging.getLogger("enforcer.link.sync").setLevel(logging.ERROR)  # 10,000 sites' warnings
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**28)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sites: list[LightSite | RealSite] = []
    tasks: list[asyncio.Task[None]] = []
    changed = asyncio.Event()

    def reply(doc: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    async def until(done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return

    while True:
        line = await reader.readline()
        if not line:
            return
        command = json.loads(line)
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
            reply({"latencies": latencies, "missing": len(sites) - len(latencies)})
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


def app_doc(version: str) -> dict[str, Any]:
    return {
        "name": "fleet",
        "version": version,
        "services": [
            {"name": "main", "containers": [{"name": "main", "image": f"busybox:{version}"}]}
        ],
    }


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"edgeward_control_{name} "):
            return float(line.split()[1])
    return 0.0


class Worker:
    def __init__(self, root: Path, port: int, nice: int = 0) -> None:
        self.root, self.port, self.nice = root, port, nice
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.bench_fleet",
            "--worker",
            str(self.root),
            "--port",
            str(self.port),
            "--nice",
            str(self.nice),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**26,
            cwd=ROOT,
        )

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("a fleet worker died")
        result: dict[str, Any] = json.loads(line)
        return result


@dataclass
class Fleet:
    """Control and the worker processes of one fleet size, under one temporary directory."""

    root: Path
    control: ControlProcess
    pool: list[Worker] = field(default_factory=list)
    nice: int = 0  # the workers' niceness


@contextlib.asynccontextmanager
async def running_fleet(
    prefix: str, keep: bool, python_args: tuple[str, ...] = (), nice: int = 0
) -> AsyncIterator[Fleet]:
    """A real control (started with `python_args`, e.g. under cProfile) and, once
    `enrolled_fleet` made them, its workers; all stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    fleet = Fleet(root, ControlProcess(root, python_args=python_args), nice=nice)
    try:
        fleet.control.start()
        yield fleet
        for w in fleet.pool:
            await w.ask({"cmd": "stop"})
    finally:
        for w in fleet.pool:
            w.kill()
        fleet.control.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


async def enrolled_fleet(
    fleet: Fleet, n: int, workers: int, result: dict[str, Any]
) -> list[list[str]]:
    """Deploy the `fleet` application to all sites, issue `n` bundles and have `workers`
    worker processes enroll them; the rates and control's CPU go into `result`; the site
    names of each worker."""
    control, root = fleet.control, fleet.root
    await control.call("PUT", "/v1/applications/fleet/versions/1", app_doc("1"))
    deployment = {
        "name": "fleet",
        "application": "fleet",
        "version": "latest",
        "placement": {"all-sites": True},
    }
    await control.call("PUT", "/v1/deployments/fleet", deployment)
    names = [f"site-{i:05d}" for i in range(n)]
    started = time.monotonic()
    async with control.session() as s:
        limit = asyncio.Semaphore(32)

        async def issue(name: str) -> str:
            async with (
                limit,
                s.post(control.url + "/v1/enrollment/tokens", json={"site": name}) as r,
            ):
                return str((await r.json())["bundle"])

        bundles = await asyncio.gather(*(issue(name) for name in names))
    result["issue_rate"] = n / (time.monotonic() - started)
    print(f"[{n}] {n} bundles issued in {time.monotonic() - started:.1f}s", flush=True)

    pool = fleet.pool
    pool.extend(Worker(root / "sites", control.port, fleet.nice) for _ in range(workers))
    for w in pool:
        await w.start()
    slices = [bundles[i::workers] for i in range(workers)]
    cpu0 = control.cpu_seconds()
    started = time.monotonic()
    answers = await asyncio.gather(
        *(
            w.ask({"cmd": "enroll", "bundles": b, "concurrency": 32})
            for w, b in zip(pool, slices, strict=True)
        )
    )
    elapsed = time.monotonic() - started
    failed = sum(a["failed"] for a in answers)
    if failed:
        print(f"[{n}] {failed} enrollments failed, e.g. {answers[0]['errors']}", flush=True)
    result["enroll_rate"] = (n - failed) / elapsed
    result["enroll_cpu"] = (control.cpu_seconds() - cpu0) / elapsed
    result["enrolled_rss"] = control.rss_mb()
    print(f"[{n}] {n - failed} sites enrolled in {elapsed:.1f}s", flush=True)
    return [names[i::workers] for i in range(workers)]


def cells(results: list[dict[str, Any]], key: str, pattern: str) -> list[str]:
    """One table row's cells: each result's `key` formatted, "-" where a result lacks it."""
    return [pattern.format(r[key]) if key in r else "-" for r in results]


def print_goal_table(
    title: str, results: list[dict[str, Any]], rows: list[tuple[str, str, list[str]]]
) -> None:
    """A table of figures: a row per measure (label, goal, a value per fleet size)."""
    headers = [title, "goal", *[f"{r['sites']:,} sites" for r in results]]
    table = [headers] + [[label, goal, *values] for label, goal, values in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    print()
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
