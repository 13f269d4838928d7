"""The simulated fleet of the fleet benches: control (one process, or several behind HAProxy:
`bench.fleet_groups`) and the worker processes that run the sites (`bench.fleet_clients`),
driven over a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.support.control import ControlProcess

ROOT = Path(__file__).resolve().parent.parent


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
    """Control and the worker processes of one fleet, under one temporary directory: one control
    process, or several behind a load balancer (`bench.fleet_groups`)."""

    root: Path
    processes: list[ControlProcess]  # the first one answers the operator's calls
    port: int  # where the sites connect: control's port, or the load balancer's
    pool: list[Worker] = field(default_factory=list)
    nice: int = 0  # the workers' niceness
    # the CPU seconds of what else serves the fleet (PostgreSQL, HAProxy), by name
    helpers: dict[str, Callable[[], float]] = field(default_factory=dict)

    @property
    def control(self) -> ControlProcess:
        return self.processes[0]

    @property
    def live(self) -> list[ControlProcess]:
        """The control processes running now (a bench may have killed one)."""
        return [p for p in self.processes if p.proc is not None]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of every live control process (by index) and helper (by name)."""
        seconds = {str(n): p.cpu_seconds() for n, p in enumerate(self.processes) if p.proc}
        seconds.update((name, cpu()) for name, cpu in self.helpers.items())
        return seconds

    def rss_mb(self) -> float:
        """The RSS of the live control processes together."""
        return sum(p.rss_mb() for p in self.live)

    async def metric(self, name: str) -> float:
        """A metric of control summed over its live processes."""
        texts = await asyncio.gather(*(p.call("GET", "/v1/metrics") for p in self.live))
        return sum(metric(text, name) for text in texts)


def cpu_shares(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Each process's CPU share between two `Fleet.cpu_seconds` (1.0 = one core busy)."""
    return {k: (after[k] - before[k]) / seconds for k in after if k in before}


def control_cpu(shares: dict[str, float]) -> float:
    """The control processes' CPU shares together (helpers, named, left out)."""
    return sum(v for k, v in shares.items() if k.isdigit())


@contextlib.asynccontextmanager
async def fleet_stopped(fleet: Fleet, keep: bool, stop: Callable[[], None]) -> AsyncIterator[Fleet]:
    """`fleet` for the block; then its workers stopped, `stop` called (control and the rest)
    and its directory removed unless `keep`, on errors too."""
    try:
        yield fleet
        for w in fleet.pool:
            await w.ask({"cmd": "stop"})
    finally:
        for w in fleet.pool:
            w.kill()
        stop()
        if not keep:
            shutil.rmtree(fleet.root, ignore_errors=True)


@contextlib.asynccontextmanager
async def running_fleet(
    prefix: str, keep: bool, python_args: tuple[str, ...] = (), nice: int = 0
) -> AsyncIterator[Fleet]:
    """A real control (started with `python_args`, e.g. under cProfile) and, once
    `enrolled_fleet` made them, its workers; all stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    control = ControlProcess(root, python_args=python_args)
    fleet = Fleet(root, [control], control.port, nice=nice)
    async with fleet_stopped(fleet, keep, control.stop):
        control.start()
        yield fleet


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
    pool.extend(Worker(root / "sites", fleet.port, fleet.nice) for _ in range(workers))
    for w in pool:
        await w.start()
    slices = [bundles[i::workers] for i in range(workers)]
    cpu0 = fleet.cpu_seconds()
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
    result["enroll_cpus"] = cpu_shares(cpu0, fleet.cpu_seconds(), elapsed)
    result["enroll_cpu"] = control_cpu(result["enroll_cpus"])
    result["enrolled_rss"] = fleet.rss_mb()
    print(f"[{n}] {n - failed} sites enrolled in {elapsed:.1f}s", flush=True)
    return [names[i::workers] for i in range(workers)]


def cells(results: list[dict[str, Any]], key: str, pattern: str) -> list[str]:
    """One table row's cells: each result's `key` formatted, "-" where a result lacks it."""
    return [pattern.format(r[key]) if key in r else "-" for r in results]


def print_goal_table(
    title: str, results: list[dict[str, Any]], rows: list[tuple[str, str, list[str]]]
) -> None:
    """A table of figures: a row per measure (label, goal, a value per fleet size)."""
    headers = [title, "goal", *[r.get("label", f"{r['sites']:,} sites") for r in results]]
    table = [headers] + [[label, goal, *values] for label, goal, values in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    print()
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
