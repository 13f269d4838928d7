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

With ``--reconnect``, the reconnect storm instead (`bench.fleet_reconnect`): every site runs
the enforcer's own `SyncClient`; control goes down for ``--outage`` seconds (60) and comes back;
printed: how long after its return the sites are back in sync (p50, max) and control's latency
during the storm (p99). Control needs a connection per site (its long-poll) and room for the
status pushes (closed once idle): a fleet larger than control's connection budget allows is
refused with the largest that fits (11,923 under `ulimit -Hn` 20000). The worker processes
may run at a lower priority (``--nice``), so that control, the thing measured, is not
starved by them.

    .venv/bin/python bench/bench_fleet.py --sites 1000 10000
    .venv/bin/python -m bench.bench_fleet --reconnect --sites 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/bench_fleet.py`: the repository's packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median, percentile
from bench.fleet_reconnect import print_reconnect, run_reconnect
from bench.fleet_sites import (
    app_doc,
    cells,
    enrolled_fleet,
    metric,
    print_goal_table,
    raise_nofile,
    running_fleet,
    worker_main,
)
from enforcer.link.enrollment import SiteIdentity, enroll
from enforcer.link.sync import POLL_WAIT, SyncClient
from tests.support.control import ControlProcess

WAIT_JITTER = 0.1  # control ends a quiet poll after wait * (1 - U(0, 0.1))
TCP_IP_HEADERS = 52  # IPv4 20 + TCP 20 + timestamps 12, per segment
SEGMENTS_PER_CYCLE = 4  # request, its ACK, response, its ACK
BALENA_MB_MONTH = 28.0


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


async def measure_idle_bytes(control: ControlProcess, root: Path) -> dict[str, float]:
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
    cycles = metric(metrics_after, "desired_not_modified_total") - metric(
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


async def run_fleet(
    n: int, workers: int, changes: int, keep: bool, profile: Path | None, nice: int = 0
) -> dict[str, Any]:
    result: dict[str, Any] = {"sites": n}
    python_args = ("-m", "cProfile", "-o", str(profile)) if profile else ()
    async with running_fleet(f"edgeward-fleet-{n}-", keep, python_args, nice) as fleet:
        control, pool = fleet.control, fleet.pool
        name_slices = await enrolled_fleet(fleet, n, workers, result)
        result.update(await measure_idle_bytes(control, fleet.root))

        started = time.monotonic()
        await asyncio.gather(
            *(w.ask({"cmd": "sync", "sites": ns}) for w, ns in zip(pool, name_slices, strict=True))
        )
        result["connect_seconds"] = time.monotonic() - started
        metrics = await control.call("GET", "/v1/metrics")
        await asyncio.sleep(3)
        metrics = await control.call("GET", "/v1/metrics")
        result["polling"] = int(metric(metrics, "sites_polling"))
        print(
            f"[{n}] all sites connected in {result['connect_seconds']:.1f}s, "
            f"{result['polling']} long-polls waiting",
            flush=True,
        )

        cpu0, t0 = control.cpu_seconds(), time.monotonic()
        await asyncio.sleep(20)
        result["idle_cpu"] = (control.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        result["idle_rss"] = control.rss_mb()

        latencies: list[float] = []
        cpu0 = control.cpu_seconds()
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
        result["propagation_cpu_s"] = (control.cpu_seconds() - cpu0) / changes
        latencies.sort()
        result["p50"] = median(latencies)
        result["p99"] = percentile(latencies, 99)
        result["max"] = latencies[-1]
        result["peak_rss"] = control.rss_mb()
        result["shed"] = int(metric(await control.call("GET", "/v1/metrics"), "http_shed_total"))
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    def fmt(key: str, pattern: str) -> list[str]:
        return cells(results, key, pattern)

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
    print_goal_table("", results, rows)
    print(
        f"\nlong-poll wait {POLL_WAIT:g} s (control ends quiet polls up to {WAIT_JITTER:.0%} "
        f"early); per-cycle TCP/IP overhead estimated as {SEGMENTS_PER_CYCLE} segments x "
        f"{TCP_IP_HEADERS} B; {os.cpu_count()} CPUs shared by control and the fleet workers"
    )


async def main_async(args: argparse.Namespace) -> None:
    if args.reconnect:
        storms = [
            await run_reconnect(n, args.workers, args.outage, args.wait_limit, args.keep, args.nice)
            for n in args.sites
        ]
        print_reconnect(storms, args.wait_limit)
        return
    results = []
    for n in args.sites:
        results.append(
            await run_fleet(
                n, args.workers, args.changes, args.keep, args.profile_control, args.nice
            )
        )
    print_table(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sites", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="the reconnect storm instead: control down --outage seconds under --sites real "
        "sync clients (e.g. --reconnect --sites 10000)",
    )
    parser.add_argument("--outage", type=float, default=60.0, help="seconds control is down [60]")
    parser.add_argument(
        "--wait-limit",
        type=float,
        default=300.0,
        help="seconds to wait for every site to be back in sync after control returns [300]",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the worker processes that simulate the sites [0]; e.g. 5: control, "
        "the thing measured, gets the CPU first (on a machine shared with other work, 5 and 10 "
        "starved the sites instead: each handshake needs both sides)",
    )
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--profile-control", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_nofile()
    if args.worker is not None:
        os.nice(args.nice)  # the simulated sites: control's CPU comes first
        asyncio.run(worker_main(args.worker, "127.0.0.1", args.port))
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
