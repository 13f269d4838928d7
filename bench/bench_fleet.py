"""Control with a simulated fleet, side by side with the goals.

Runs one real ``edge-control serve`` process and a fleet of lightweight sites in worker
processes that speak the real protocol over real TLS: they enroll with the enforcer's own
`enroll` (key, CSR, pinned CA), then each holds one mutual-TLS connection with its own site
certificate, long-polls its desired state with the default wait (300 s) and pushes a status
batch after each change. Measured per fleet size:

- enrollment rate (bundles issued by the operator API, then every site enrolling);
- change propagation: from pushing a new version (deployed with ``version: latest``) to each
  site having it, p50 / p99 / max;
- bytes on the wire per idle long-poll cycle, TLS included (a counting TCP proxy in front of a
  real `SyncClient`), and what that makes per idle site per hour and per month;
- control's RSS and CPU (enrolling, idle with every site waiting, propagating).

    .venv/bin/python bench/bench_fleet.py --sites 1000 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from control.server import shrink_tls_read_buffers
from enforcer.link.enrollment import SiteIdentity, enroll, load_site_identity
from enforcer.link.sync import SyncClient

POLL_WAIT = 300  # the SyncClient default
WAIT_JITTER = 0.1  # control ends a quiet poll after wait * (1 - U(0, 0.1))
TCP_IP_HEADERS = 52  # IPv4 20 + TCP 20 + timestamps 12, per segment
SEGMENTS_PER_CYCLE = 4  # request, its ACK, response, its ACK
BALENA_MB_MONTH = 28.0


def raise_nofile() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- worker: a slice of the fleet -----------------------------------------------------------


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
                    path = f"/v1/sync/desired?revision={self.revision}&wait={POLL_WAIT}"
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


async def worker_main(root: Path, host: str, port: int) -> None:
    raise_nofile()
    shrink_tls_read_buffers()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**28)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sites: list[LightSite] = []
    tasks: list[asyncio.Task[None]] = []
    changed = asyncio.Event()

    def reply(doc: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            return
        command = json.loads(line)
        if command["cmd"] == "enroll":
            limit = asyncio.Semaphore(command["concurrency"])
            errors: list[str] = []

            async def one(
                bundle: str, limit: asyncio.Semaphore = limit, errors: list[str] = errors
            ) -> None:
                async with limit:
                    name = json.loads(_b64(bundle))["site"]
                    try:
                        await enroll(bundle, root / name)
                    except Exception as e:
                        errors.append(f"{name}: {e}")

            started = time.monotonic()
            await asyncio.gather(*(one(b) for b in command["bundles"]))
            reply(
                {"seconds": time.monotonic() - started, "errors": errors[:5], "failed": len(errors)}
            )
        elif command["cmd"] == "sync":
            for name in command["sites"]:
                identity = load_site_identity(root / name)
                assert identity is not None
                site = LightSite(identity, host, port)
                site.changed = changed
                sites.append(site)
            handshakes = asyncio.Semaphore(64)
            started = time.monotonic()
            tasks = [asyncio.create_task(s.run(handshakes)) for s in sites]
            while not all(s.revision for s in sites):
                changed.clear()
                await changed.wait()
            reply({"seconds": time.monotonic() - started})
        elif command["cmd"] == "expect":
            version, t0 = command["version"], command["t0"]
            while not all(version in s.seen for s in sites):
                changed.clear()
                await changed.wait()
            reply({"latencies": [s.seen[version] - t0 for s in sites]})
        elif command["cmd"] == "stop":
            for task in tasks:
                task.cancel()
            reply({"stopped": True})
            return


def _b64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- the byte counting proxy ------------------------------------------------------------------


class CountingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = 0
        self.down = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


# --- the main process -------------------------------------------------------------------------


class Control:
    profile: Path | None = None  # --profile-control: run control under cProfile

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.state = root / "control"
        config = root / "control.toml"
        config.write_text(f'listen = "127.0.0.1:{self.port}"\n')
        prefix = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *prefix,
                "-m",
                "control.cli.main",
                "--config",
                str(config),
                "--state-dir",
                str(self.state),
                "serve",
            ],
            stdout=(root / "control.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.ps = psutil.Process(self.proc.pid)
        self.url = f"https://127.0.0.1:{self.port}"

    async def wait_ready(self) -> None:
        for _ in range(200):
            if (self.state / "admin-token").exists():
                try:
                    await self.call("GET", "/v1/health")
                    return
                except (aiohttp.ClientError, OSError):
                    pass
            await asyncio.sleep(0.1)
        raise RuntimeError((self.root / "control.log").read_text())

    def session(self) -> aiohttp.ClientSession:
        context = ssl.create_default_context(cafile=str(self.state / "ca.pem"))
        token = (self.state / "admin-token").read_text().strip()
        return aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"},
            connector=aiohttp.TCPConnector(ssl=context, limit=64),
        )

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session() as s, s.request(method, self.url + path, json=body) as r:
            if r.status >= 400:
                raise RuntimeError(await r.text())
            return (
                await r.json(content_type=None)
                if r.content_type.endswith("json")
                else await r.text()
            )

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def app_doc(version: str) -> dict[str, Any]:
    return {
        "name": "fleet",
        "version": version,
        "services": [
            {"name": "main", "containers": [{"name": "main", "image": f"busybox:{version}"}]}
        ],
    }


async def measure_idle_bytes(control: Control, root: Path) -> dict[str, float]:
    """Bytes per quiet long-poll cycle of a real SyncClient, through a counting proxy."""
    answer = await control.call("POST", "/v1/enrollment/tokens", {"site": "bytes-probe"})
    identity = await enroll(answer["bundle"], root / "bytes-probe")
    proxy = CountingProxy(control.port)
    await proxy.start()
    probe = SiteIdentity(
        identity.site,
        f"https://127.0.0.1:{proxy.port}",
        identity.ca_fingerprint,
        identity.directory,
    )
    received = asyncio.Event()

    async def on_desired(revision: int, apps: list[dict[str, Any]]) -> None:
        received.set()

    client = SyncClient(probe, on_desired=on_desired, state_dir=root / "bytes-probe", poll_wait=1.0)
    task = asyncio.create_task(client.run())
    await received.wait()
    await asyncio.sleep(2.0)  # handshake, first answer and first status push are behind us
    metrics_before = await control.call("GET", "/v1/metrics")
    up0, down0 = proxy.up, proxy.down
    await asyncio.sleep(12.0)
    metrics_after = await control.call("GET", "/v1/metrics")
    cycles = _metric(metrics_after, "desired_not_modified_total") - _metric(
        metrics_before, "desired_not_modified_total"
    )
    per_cycle = (proxy.up - up0 + proxy.down - down0) / max(cycles, 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    client.close()
    proxy.close()
    cycles_per_hour = 3600 / (POLL_WAIT * (1 - WAIT_JITTER / 2))
    with_headers = per_cycle + SEGMENTS_PER_CYCLE * TCP_IP_HEADERS
    return {
        "cycle_tls": per_cycle,
        "cycle_wire": with_headers,
        "hour_wire": with_headers * cycles_per_hour,
        "month_mb": with_headers * cycles_per_hour * 24 * 30 / 1e6,
    }


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"edgeward_control_{name} "):
            return float(line.split()[1])
    return 0.0


class Worker:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            str(self.root),
            "--port",
            str(self.port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**26,
        )

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


async def run_fleet(n: int, workers: int, changes: int, keep: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"edgeward-fleet-{n}-"))
    control = Control(root)
    result: dict[str, Any] = {"sites": n}
    pool: list[Worker] = []
    try:
        await control.wait_ready()
        await control.call("PUT", "/v1/applications/fleet/versions/1", app_doc("1"))
        await control.call(
            "PUT",
            "/v1/deployments/fleet",
            {
                "name": "fleet",
                "application": "fleet",
                "version": "latest",
                "placement": {"all-sites": True},
            },
        )
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

        pool = [Worker(root / "sites", control.port) for _ in range(workers)]
        for w in pool:
            await w.start()
        slices = [bundles[i::workers] for i in range(workers)]
        cpu0 = control.cpu()
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
        result["enroll_cpu"] = (control.cpu() - cpu0) / elapsed
        result["enrolled_rss"] = control.rss_mb()
        print(f"[{n}] {n - failed} sites enrolled in {elapsed:.1f}s", flush=True)

        result.update(await measure_idle_bytes(control, root))

        started = time.monotonic()
        name_slices = [names[i::workers] for i in range(workers)]
        await asyncio.gather(
            *(w.ask({"cmd": "sync", "sites": ns}) for w, ns in zip(pool, name_slices, strict=True))
        )
        result["connect_seconds"] = time.monotonic() - started
        metrics = await control.call("GET", "/v1/metrics")
        await asyncio.sleep(3)
        metrics = await control.call("GET", "/v1/metrics")
        result["polling"] = int(_metric(metrics, "sites_polling"))
        print(
            f"[{n}] all sites connected in {result['connect_seconds']:.1f}s, "
            f"{result['polling']} long-polls waiting",
            flush=True,
        )

        cpu0, t0 = control.cpu(), time.monotonic()
        await asyncio.sleep(20)
        result["idle_cpu"] = (control.cpu() - cpu0) / (time.monotonic() - t0)
        result["idle_rss"] = control.rss_mb()

        latencies: list[float] = []
        cpu0 = control.cpu()
        for k in range(changes):
            version = str(k + 2)
            t0 = time.time()
            expect = [
                asyncio.create_task(w.ask({"cmd": "expect", "version": version, "t0": t0}))
                for w in pool
            ]
            await control.call(
                "PUT", f"/v1/applications/fleet/versions/{version}", app_doc(version)
            )
            for a in await asyncio.gather(*expect):
                latencies.extend(a["latencies"])
            print(
                f"[{n}] change {k + 1}: every site had version {version} after "
                f"{max(latencies[-n:]):.2f}s",
                flush=True,
            )
            await asyncio.sleep(3)
        result["propagation_cpu_s"] = (control.cpu() - cpu0) / changes
        latencies.sort()
        result["p50"] = statistics.median(latencies)
        result["p99"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        result["max"] = latencies[-1]
        result["peak_rss"] = control.rss_mb()
        result["shed"] = int(_metric(await control.call("GET", "/v1/metrics"), "http_shed_total"))
        for w in pool:
            await w.ask({"cmd": "stop"})
    finally:
        for w in pool:
            w.kill()
        control.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    def fmt(key: str, pattern: str) -> list[str]:
        return [pattern.format(r[key]) if key in r else "-" for r in results]

    rows: list[tuple[str, str, list[str]]] = [
        ("sites waiting on one control", "10,000", [f"{r.get('polling', 0):,}" for r in results]),
        ("enrollment rate (sites/s)", ">= 33.3/s", fmt("enroll_rate", "{:.1f}/s")),
        (
            "10,000 enrollments take",
            "< 300 s",
            [f"{10000 / r['enroll_rate']:.0f} s" if r.get("enroll_rate") else "-" for r in results],
        ),
        ("bundle issue rate (operator)", "-", fmt("issue_rate", "{:.0f}/s")),
        ("all sites connected after", "-", fmt("connect_seconds", "{:.1f} s")),
        ("change propagation p50", "-", fmt("p50", "{:.2f} s")),
        ("change propagation p99", "<= 3 s", fmt("p99", "{:.2f} s")),
        ("change propagation max", "-", fmt("max", "{:.2f} s")),
        ("503 + Retry-After answers", "-", fmt("shed", "{:,}")),
        ("idle poll cycle, TLS bytes", "-", fmt("cycle_tls", "{:.0f} B")),
        ("idle poll cycle + TCP/IP hdrs", "-", fmt("cycle_wire", "{:.0f} B")),
        ("idle site per hour", "-", fmt("hour_wire", "{:.0f} B")),
        (
            "idle site per month",
            f"< 5 MB (balena ~{BALENA_MB_MONTH:.0f} MB)",
            fmt("month_mb", "{:.2f} MB"),
        ),
        ("control RSS, after enrollment", "-", fmt("enrolled_rss", "{:.0f} MiB")),
        ("control RSS, all sites waiting", "-", fmt("idle_rss", "{:.0f} MiB")),
        ("control RSS, after changes", "-", fmt("peak_rss", "{:.0f} MiB")),
        ("control CPU, idle", "-", fmt("idle_cpu", "{:.1%}")),
        ("control CPU, enrolling", "-", fmt("enroll_cpu", "{:.0%}")),
        ("control CPU s per change", "-", fmt("propagation_cpu_s", "{:.2f} s")),
    ]
    headers = ["", "goal", *[f"{r['sites']:,} sites" for r in results]]
    table = [headers] + [[label, goal, *values] for label, goal, values in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    print()
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(
        f"\nlong-poll wait {POLL_WAIT} s (control ends quiet polls up to {WAIT_JITTER:.0%} "
        f"early); per-cycle TCP/IP overhead estimated as {SEGMENTS_PER_CYCLE} segments x "
        f"{TCP_IP_HEADERS} B; {os.cpu_count()} CPUs shared by control and the fleet workers"
    )


async def main_async(args: argparse.Namespace) -> None:
    results = []
    for n in args.sites:
        results.append(await run_fleet(n, args.workers, args.changes, args.keep))
    print_table(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sites", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--profile-control", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_nofile()
    Control.profile = args.profile_control
    if args.worker is not None:
        asyncio.run(worker_main(args.worker, "127.0.0.1", args.port))
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
