"""Control with a simulated fleet, side by side with the goals.

Runs control in each of its setups (`bench.fleet_groups`, ``--setups``): one real
``edge-control serve`` on SQLite, and two and three on one PostgreSQL database behind HAProxy;
and a fleet of lightweight sites in worker processes that speak the real protocol over real
TLS: they enroll with the enforcer's own `enroll` (key, CSR, pinned CA), then each holds one
mutual-TLS connection with its own site certificate, long-polls its desired state with the
default wait (300 s) and pushes a status batch after each change. Measured per setup and
fleet size, side by side:

- enrollment rate (bundles issued by the operator API, then every site enrolling);
- change propagation: from pushing a new version (deployed with ``version: latest``) to each
  site having it, p50 / p99 / max;
- bytes on the wire per idle long-poll cycle, TLS included (a counting TCP proxy in front of a
  real `SyncClient`), and what that makes per idle site per hour and per month;
- control's RSS (all processes together, and per connected site) and CPU per process
  (enrolling, idle with every site waiting, per change), PostgreSQL's and HAProxy's CPU;
- with several processes, one of them SIGKILLed (the one holding most long-polls) and a change
  pushed through another at once: how many sites lost their long-poll, how long until all had
  the change, and until every site held a long-poll again.

With ``--reconnect``, the reconnect storm instead (`bench.fleet_reconnect`): every site runs
the enforcer's own `SyncClient`; control goes down for ``--outage`` seconds (60) and comes back;
printed: how long after its return the sites are back in sync (p50, max) and control's latency
during the storm (p99). Control needs a connection per site (its long-poll) and room for the
status pushes (closed once idle): a fleet larger than control's connection budget allows is
refused with the largest that fits (11,923 under `ulimit -Hn` 20000). The worker processes
may run at a lower priority (``--nice``), so that control, the thing measured, is not
starved by them.

    .venv/bin/python bench/bench_fleet.py --sites 1000 10000
    .venv/bin/python bench/bench_fleet.py --sites 1000 --setups postgresql-3
    .venv/bin/python -m bench.bench_fleet --reconnect --sites 10000
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/bench_fleet.py`: the repository's packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median, percentile
from bench.fleet_clients import raise_nofile, worker_main
from bench.fleet_groups import (
    SETUPS,
    haproxies_for,
    haproxy_maxconn,
    kill_one,
    running_group,
    setup_label,
)
from bench.fleet_reconnect import print_reconnect, run_reconnect
from bench.fleet_sites import (
    Fleet,
    app_doc,
    cells,
    control_cpu,
    cpu_shares,
    enrolled_fleet,
    print_goal_table,
)
from enforcer.link.enrollment import SiteIdentity, enroll
from enforcer.link.sync import POLL_WAIT, SyncClient

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


async def measure_idle_bytes(fleet: Fleet) -> dict[str, float]:
    """Bytes per quiet long-poll cycle of a real SyncClient, through a counting proxy."""
    answer = await fleet.control.call("POST", "/v1/enrollment/tokens", {"site": "bytes-probe"})
    identity = await enroll(answer["bundle"], fleet.root / "bytes-probe")
    proxy = CountingProxy(fleet.port)
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

    state = fleet.root / "bytes-probe"
    client = SyncClient(probe, on_desired=on_desired, state_dir=state, poll_wait=1.0)
    task = asyncio.create_task(client.run())
    await received.wait()
    await asyncio.sleep(2.0)  # handshake, first answer and first status push are behind us
    cycles0 = await fleet.metric("desired_not_modified_total")
    up0, down0 = proxy.up, proxy.down
    await asyncio.sleep(12.0)
    cycles = await fleet.metric("desired_not_modified_total") - cycles0
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
    fleet: Fleet, n: int, workers: int, changes: int, wait_limit: float, result: dict[str, Any]
) -> None:
    """Enroll `n` sites, connect them, measure idle and `changes` changes; with several control
    processes, then kill one (`bench.fleet_groups.kill_one`). The figures go into `result` as
    they come (a run that fails half-way keeps those it made)."""
    control, pool = fleet.control, fleet.pool
    name_slices = await enrolled_fleet(fleet, n, workers, result)
    result.update(await measure_idle_bytes(fleet))

    started = time.monotonic()
    await asyncio.gather(
        *(
            w.ask({"cmd": "sync", "sites": ns, "timeout": wait_limit})
            for w, ns in zip(pool, name_slices, strict=True)
        )
    )
    result["connect_seconds"] = time.monotonic() - started
    await asyncio.sleep(3)
    result["polling"] = int(await fleet.metric("sites_polling"))
    print(
        f"[{n}] all sites connected in {result['connect_seconds']:.1f}s, "
        f"{result['polling']} long-polls waiting",
        flush=True,
    )

    cpu0, t0 = fleet.cpu_seconds(), time.monotonic()
    await asyncio.sleep(20)
    result["idle_cpus"] = cpu_shares(cpu0, fleet.cpu_seconds(), time.monotonic() - t0)
    result["idle_cpu"] = control_cpu(result["idle_cpus"])
    result["idle_rss"] = fleet.rss_mb()
    result["rss_per_site"] = result["idle_rss"] * 2**20 / 1000 / max(result["polling"], 1)
    added = result["idle_rss"] - result["enrolled_rss"]
    result["rss_added_per_site"] = added * 2**20 / 1000 / max(result["polling"], 1)

    latencies: list[float] = []
    result["change_missing"] = 0
    cpu0 = fleet.cpu_seconds()
    for k in range(changes):
        version = str(k + 2)
        t0 = time.time()
        ask = {"cmd": "expect", "version": version, "t0": t0, "timeout": wait_limit}
        expect = [asyncio.create_task(w.ask(ask)) for w in pool]
        await control.call("PUT", f"/v1/applications/fleet/versions/{version}", app_doc(version))
        answers = await asyncio.gather(*expect)
        had = [x for a in answers for x in a["latencies"]]
        latencies.extend(had)
        result["change_missing"] += sum(a["missing"] for a in answers)
        print(
            f"[{n}] change {k + 1}: {len(had)} sites had version {version} after "
            f"{max(had, default=math.nan):.2f}s",
            flush=True,
        )
        await asyncio.sleep(3)
    result["change_cpus"] = cpu_shares(cpu0, fleet.cpu_seconds(), changes)  # seconds per change
    result["propagation_cpu_s"] = control_cpu(result["change_cpus"])
    latencies.sort()
    result["p50"] = median(latencies)
    result["p99"] = percentile(latencies, 99)
    result["max"] = max(latencies, default=math.nan)
    result["peak_rss"] = fleet.rss_mb()
    result["shed"] = int(await fleet.metric("http_shed_total"))
    if len(fleet.processes) > 1:
        result.update(await kill_one(fleet, n, str(changes + 2), wait_limit))


def per_process(shares: dict[str, float], pattern: str) -> str:
    """The control processes' figures of a `cpu_shares` result, in process order."""
    processes = sorted((k for k in shares if k.isdigit()), key=int)
    return " / ".join(pattern.format(shares[k]) for k in processes)


def print_table(results: list[dict[str, Any]], open_files: int) -> None:
    def fmt(key: str, pattern: str) -> list[str]:
        return cells(results, key, pattern)

    def each(key: str, pattern: str) -> list[str]:
        return [per_process(r[key], pattern) if key in r else "-" for r in results]

    def helper(key: str, name: str, pattern: str) -> list[str]:
        return [pattern.format(r[key][name]) if name in r.get(key, {}) else "-" for r in results]

    rows: list[tuple[str, str, list[str]]] = [
        ("sites waiting (long-polls held)", "10,000", fmt("polling", "{:,}")),
        ("enrollment rate (sites/s)", ">= 33.3/s", fmt("enroll_rate", "{:.1f}/s")),
        ("10,000 enrollments take", "< 300 s",
         [f"{10000 / r['enroll_rate']:.0f} s" if r.get("enroll_rate") else "-" for r in results]),
        ("bundle issue rate (operator)", "-", fmt("issue_rate", "{:.0f}/s")),
        ("all sites connected after", "-", fmt("connect_seconds", "{:.1f} s")),
        ("change propagation p50", "-", fmt("p50", "{:.2f} s")),
        ("change propagation p99", "<= 3 s", fmt("p99", "{:.2f} s")),
        ("change propagation max", "-", fmt("max", "{:.2f} s")),
        ("sites that missed a change", "0", fmt("change_missing", "{:,}")),
        ("503 + Retry-After answers", "-", fmt("shed", "{:,}")),
        ("idle poll cycle, TLS bytes", "-", fmt("cycle_tls", "{:.0f} B")),
        ("idle poll cycle + TCP/IP hdrs", "-", fmt("cycle_wire", "{:.0f} B")),
        ("idle site per hour", "-", fmt("hour_wire", "{:.0f} B")),
        ("idle site per month", f"< 5 MB (balena ~{BALENA_MB_MONTH:.0f} MB)",
         fmt("month_mb", "{:.2f} MB")),
        ("control RSS (all), after enrollment", "-", fmt("enrolled_rss", "{:.0f} MiB")),
        ("control RSS (all), sites waiting", "-", fmt("idle_rss", "{:.0f} MiB")),
        ("control RSS per connected site", "< 30 KB", fmt("rss_per_site", "{:.1f} KB")),
        ("  added by connecting the sites", "-", fmt("rss_added_per_site", "{:.1f} KB")),
        ("control RSS (all), after changes", "-", fmt("peak_rss", "{:.0f} MiB")),
        ("CPU per control process, enrolling", "-", each("enroll_cpus", "{:.0%}")),
        ("CPU per control process, idle", "-", each("idle_cpus", "{:.1%}")),
        ("CPU s per change, per process", "-", each("change_cpus", "{:.2f}")),
        ("PostgreSQL CPU, enrolling", "-", helper("enroll_cpus", "postgresql", "{:.0%}")),
        ("PostgreSQL CPU, idle", "-", helper("idle_cpus", "postgresql", "{:.1%}")),
        ("PostgreSQL CPU s per change", "-", helper("change_cpus", "postgresql", "{:.2f}")),
        ("HAProxy CPU, enrolling", "-", helper("enroll_cpus", "haproxy", "{:.0%}")),
        ("HAProxy CPU, idle", "-", helper("idle_cpus", "haproxy", "{:.1%}")),
        ("one control process SIGKILLed:", "", ["" for _ in results]),
        ("  long-polls it held", "-", fmt("held_by_killed", "{:,}")),
        ("  sites that lost their long-poll", "-", fmt("lost", "{:,}")),
        ("  a change pushed then: sites had it, p50", "-", fmt("resync_p50", "{:.2f} s")),
        ("  all sites back in sync after", "-", fmt("resync_max", "{:.2f} s")),
        ("  not back in sync", "0", fmt("resync_missing", "{:,}")),
        ("  every long-poll held again after", "-", fmt("repolled", "{:.1f} s")),
        ("  503s from the others meanwhile", "-", fmt("kill_shed", "{:,}")),
    ]  # fmt: skip
    print_goal_table("", results, rows)
    print(
        f"\nlong-poll wait {POLL_WAIT:g} s (control ends quiet polls up to {WAIT_JITTER:.0%} "
        f"early); per-cycle TCP/IP overhead estimated as {SEGMENTS_PER_CYCLE} segments x "
        f"{TCP_IP_HEADERS} B; {os.cpu_count()} CPUs shared by control, PostgreSQL, HAProxy and "
        "the fleet workers; KB = 1,000 bytes; a change goes to the first control process"
    )
    for r in results:
        if r.get("haproxies", 0) > 1:
            print(
                f"{r['label']}: {r['haproxies']} HAProxy processes share the port (one holds "
                f"at most {haproxy_maxconn(open_files):,} connections with {open_files:,} open "
                "files, two per connection)"
            )


async def main_async(args: argparse.Namespace) -> None:
    if args.reconnect:
        storms = [
            await run_reconnect(n, args.workers, args.outage, args.wait_limit, args.keep, args.nice)
            for n in args.sites
        ]
        print_reconnect(storms, args.wait_limit)
        return
    open_files = raise_nofile()
    python_args = (
        ("-m", "cProfile", "-o", str(args.profile_control)) if args.profile_control else ()
    )
    results: list[dict[str, Any]] = []
    try:
        for n in args.sites:
            for setup in args.setups:
                result: dict[str, Any] = {"sites": n, "label": f"{n:,}: {setup_label(setup)}"}
                result["haproxies"] = haproxies_for(n, open_files) if SETUPS[setup] > 1 else 0
                results.append(result)
                group = running_group(setup, n, args.keep, open_files, args.nice, python_args)
                try:
                    async with group as fleet:
                        await run_fleet(
                            fleet, n, args.workers, args.changes, args.wait_limit, result
                        )
                except Exception as e:  # the other setups still run; the table says "-"
                    print(f"[{n}] {setup} failed: {type(e).__name__}: {e}", flush=True)
    finally:  # interrupted (Ctrl-C), the setups measured so far
        if results:
            print_table(results, open_files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sites", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--setups",
        nargs="+",
        choices=list(SETUPS),
        default=list(SETUPS),
        help="the control setups side by side, each with every --sites [all: "
        + ", ".join(SETUPS)
        + "]",
    )
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
        help="seconds to wait for every site to be back in sync after control returns, or "
        "after one of several control processes was killed [300]",
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
