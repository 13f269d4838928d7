"""The reconnect storm: control down for a while under a fleet of real sync clients.

Every site runs the enforcer's own `SyncClient` (`bench.fleet_clients.RealSite`: its defaults,
its backoff with jitter and `Retry-After`). Once all are in sync, control is stopped for
`outage` seconds and started again on the same port and state; the moment it answers, a new
version of the fleet's application is pushed. A site is back in sync when it holds that
version. Meanwhile a probe asks control's `/v1/health` every 100 ms over one connection: its
latency is what an operator (or a site) waits for control during the storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import ssl
import time
from typing import Any

import aiohttp

from bench.common import median, percentile
from bench.fleet_clients import raise_nofile
from bench.fleet_sites import (
    app_doc,
    cells,
    enrolled_fleet,
    metric,
    print_goal_table,
    running_fleet,
)
from control.api.admission import connection_budget
from control.server import LISTEN_BACKLOG
from tests.support.control import ControlProcess

SYNC_GOAL_P50 = 5.0
SYNC_GOAL_MAX = 30.0
LATENCY_GOAL_P99 = 5.0


async def probe(control: ControlProcess, latencies: list[float], done: asyncio.Event) -> None:
    """GET /v1/health every 100 ms until `done`; each answer's latency (a failure counts as
    the time until it failed)."""
    context = ssl.create_default_context(cafile=str(control.state_dir / "ca.pem"))
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=1)) as s:
        while not done.is_set():
            t0 = time.monotonic()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with s.get(f"{control.url}/v1/health", timeout=timeout) as r:
                    await r.read()
            latencies.append(time.monotonic() - t0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.1)


# Control keeps a site's long-poll open and closes its status push connection once idle for
# `control.server.KEEPALIVE_SECONDS`; past its connection budget it closes new connections at
# once (`control.api.admission`: a site turned away retries within 5 s), so a fleet needs a
# file per site at control and some room for the status pushes.
CONTROL_FDS_PER_SITE = 1.25
WORKER_FDS_PER_SITE = 7  # a SyncClient's 4 connections, its outbox's database, WAL and shm
SITES_PER_WORKER = 2000  # each site's outbox has its own thread: fewer per process, less GIL
SPARE_FDS = 500


def largest_fleet(open_files: int) -> int:
    """The most real sync clients that one control can hold with `open_files`."""
    return int(connection_budget(open_files, LISTEN_BACKLOG) / CONTROL_FDS_PER_SITE)


def workers_for(n: int, workers: int, open_files: int) -> int:
    """At least `workers` worker processes, and as many as `n` real clients' files need."""
    per_worker = min(SITES_PER_WORKER, (open_files - SPARE_FDS) // WORKER_FDS_PER_SITE)
    return max(workers, -(-n // per_worker))


async def metrics_text(control: ControlProcess, tries: int = 3) -> str | None:
    """Control's metrics, or None when it does not answer (the table says "-")."""
    for _ in range(tries):
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            return str(await control.call("GET", "/v1/metrics"))
        await asyncio.sleep(5)
    return None


async def run_reconnect(
    n: int, workers: int, outage: float, wait_limit: float, keep: bool, nice: int = 0
) -> dict[str, Any]:
    open_files = raise_nofile()
    if n > largest_fleet(open_files):
        raise SystemExit(
            f"{n:,} real sync clients need about {n * CONTROL_FDS_PER_SITE:,.0f} connections "
            f"at control; with {open_files:,} open files (ulimit -Hn) it keeps "
            f"{connection_budget(open_files, LISTEN_BACKLOG):,}: the largest fleet "
            f"here is --sites {largest_fleet(open_files)}"
        )
    workers = workers_for(n, workers, open_files)
    result: dict[str, Any] = {"sites": n, "outage": outage}
    async with running_fleet(f"edgeward-reconnect-{n}-", keep, nice=nice) as fleet:
        control, pool = fleet.control, fleet.pool
        slices = await enrolled_fleet(fleet, n, workers, result)
        started = time.monotonic()
        await asyncio.gather(
            *(
                w.ask({"cmd": "sync", "sites": names, "client": "real"})
                for w, names in zip(pool, slices, strict=True)
            )
        )
        result["connect_seconds"] = time.monotonic() - started
        print(
            f"[{n}] {n} real sync clients ({workers} worker processes) in sync after "
            f"{time.monotonic() - started:.1f}s",
            flush=True,
        )
        await asyncio.sleep(5)  # status pushes done, every long-poll waiting

        control.stop()
        print(f"[{n}] control stopped; starting it again in {outage:g} s", flush=True)
        await asyncio.sleep(outage)
        control.start()
        back = time.time()
        cpu0, wall0 = control.cpu_seconds(), time.monotonic()
        fleet_cpu0 = sum(w.cpu_seconds() for w in pool)
        print(f"[{n}] control is back; pushing version 2", flush=True)
        latencies: list[float] = []
        done = asyncio.Event()
        prober = asyncio.create_task(probe(control, latencies, done))
        expect = [
            asyncio.create_task(
                w.ask({"cmd": "expect", "version": "2", "t0": back, "timeout": wait_limit})
            )
            for w in pool
        ]
        await control.call("PUT", "/v1/applications/fleet/versions/2", app_doc("2"))
        answers = await asyncio.gather(*expect)
        done.set()
        await prober
        wall = time.monotonic() - wall0
        control_cpu = control.cpu_seconds() - cpu0
        fleet_cpu = sum(w.cpu_seconds() for w in pool) - fleet_cpu0
        result["storm_cpu"], result["fleet_cpu"] = control_cpu / wall, fleet_cpu / wall
        result["control_ms_per_site"] = 1000 * control_cpu / n
        result["fleet_ms_per_site"] = 1000 * fleet_cpu / n
        # the storm cannot end sooner than both sides' CPU spread over every core of the machine
        result["cpu_floor"] = (control_cpu + fleet_cpu) / (os.cpu_count() or 1)
        synced = [x for a in answers for x in a["latencies"]]
        result["missing"] = sum(a["missing"] for a in answers)
        result["sync_p50"] = median(synced)
        result["sync_p99"] = percentile(synced, 99)
        result["sync_max"] = max(synced, default=math.nan)
        result["latency_p50"] = median(latencies)
        result["latency_p99"] = percentile(latencies, 99)
        result["latency_max"] = max(latencies, default=math.nan)
        result["probes"] = len(latencies)
        result["rss"] = control.rss_mb()
        metrics = await metrics_text(control)
        if metrics is not None:
            result["shed"] = int(metric(metrics, "http_shed_total"))
            result["statuses"] = int(metric(metrics, "status_batches_applied_total"))
            for key in (
                "tls_handshakes_started",
                "tls_handshakes_failed",
                "connections_refused",
                "connections_stale",
            ):
                result[key] = int(metric(metrics, key + "_total"))
    return result


def print_reconnect(results: list[dict[str, Any]], wait_limit: float) -> None:
    def row(key: str, pattern: str) -> list[str]:
        return cells(results, key, pattern)

    rows = [
        ("control down", "-", row("outage", "{:g} s")),
        ("back in sync after return, p50", f"< {SYNC_GOAL_P50:g} s", row("sync_p50", "{:.2f} s")),
        ("back in sync after return, p99", "-", row("sync_p99", "{:.2f} s")),
        ("back in sync after return, max", f"< {SYNC_GOAL_MAX:g} s", row("sync_max", "{:.2f} s")),
        (f"not back within {wait_limit:g} s", "0", row("missing", "{:,}")),
        ("control latency in the storm, p50", "-", row("latency_p50", "{:.3f} s")),
        ("control latency in the storm, p99", f"< {LATENCY_GOAL_P99:g} s",
         row("latency_p99", "{:.3f} s")),
        ("control latency in the storm, max", "-", row("latency_max", "{:.3f} s")),
        ("latency probes (GET /v1/health)", "-", row("probes", "{:,}")),
        ("503 + Retry-After answers", "-", row("shed", "{:,}")),
        ("status batches applied since return", "-", row("statuses", "{:,}")),
        ("TLS handshakes since return", "-", row("tls_handshakes_started", "{:,}")),
        ("  of which failed or abandoned", "-", row("tls_handshakes_failed", "{:,}")),
        ("connections closed at once (full)", "-", row("connections_refused", "{:,}")),
        ("connections closed after 30 s unread", "-", row("connections_stale", "{:,}")),
        ("control CPU in the storm", "-", row("storm_cpu", "{:.0%}")),
        ("fleet workers' CPU in the storm", "-", row("fleet_cpu", "{:.0%}")),
        ("control CPU per site", "-", row("control_ms_per_site", "{:.1f} ms")),
        ("fleet workers' CPU per site", "-", row("fleet_ms_per_site", "{:.1f} ms")),
        ("both CPUs over all cores (a floor)", "-", row("cpu_floor", "{:.1f} s")),
        ("control RSS after", "-", row("rss", "{:.0f} MiB")),
        ("first sync of all sites took", "-", row("connect_seconds", "{:.1f} s")),
    ]  # fmt: skip
    print_goal_table("reconnect storm (real SyncClient)", results, rows)
    for r in results:
        verdicts = [
            ("p50", r.get("sync_p50", 1e9) < SYNC_GOAL_P50),
            ("all", r.get("missing", 1) == 0 and r.get("sync_max", 1e9) < SYNC_GOAL_MAX),
            ("control p99", r.get("latency_p99", 1e9) < LATENCY_GOAL_P99),
        ]
        said = ", ".join(f"{what} {'met' if ok else 'MISSED'}" for what, ok in verdicts)
        print(f"{r['sites']:,} sites: {said}")
