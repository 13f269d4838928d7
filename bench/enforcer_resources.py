"""The enforcer daemon's resident memory and idle CPU with 0, 20 and 50 managed containers."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from bench.common import Bench, UeventCounter, note, say, table, timed_cli
from bench.enforcer_converge import app_spec, services_of, wait_running
from bench.enforcer_options import CPU_GOAL_PCT, RSS_GOAL_MB, Options


@dataclass
class Usage:
    containers: int
    rss_mb: float
    rss_max_mb: float
    uss_mb: float
    threads: int
    cpu_pct: float
    uevents: int | None


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def measure_idle(p: psutil.Process, seconds: float, containers: int) -> Usage:
    with UeventCounter() as uevents:
        c0, w0 = cpu_seconds(p), time.monotonic()
        rss_max = 0
        while time.monotonic() - w0 < seconds:
            rss_max = max(rss_max, p.memory_info().rss)
            time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - w0))))
        c1, w1 = cpu_seconds(p), time.monotonic()
    full = p.memory_full_info()
    return Usage(
        containers=containers,
        rss_mb=full.rss / 2**20,
        rss_max_mb=max(rss_max, full.rss) / 2**20,
        uss_mb=full.uss / 2**20,
        threads=p.num_threads(),
        cpu_pct=100 * (c1 - c0) / (w1 - w0),
        uevents=uevents.count,
    )


def resources_bench(bench: Bench, o: Options) -> None:
    say(
        f"\n== 3. Enforcer resident memory and idle CPU ({o.idle_seconds:g} s idle window per "
        "level, after 5 s settling) =="
    )
    enf = bench.enforcer("res", o.log_level)
    p = enf.process()
    say(f"  daemon ready {enf.ready_after:.1f} s after exec")
    time.sleep(5)
    usage: list[Usage] = []
    spec = enf.root / "idle.yaml"
    for level in o.levels:
        if level:
            spec.write_text(app_spec("idle", services_of(level), bench.image))
            t0 = time.monotonic()
            timed_cli(enf, "apply", "-f", str(spec))
            wait_running(bench, "edgeward.app=idle", level, 300)
            note(f"{level} containers running after {time.monotonic() - t0:.1f} s")
            time.sleep(5)
        note(f"measuring {o.idle_seconds:g} s idle with {level} containers")
        usage.append(measure_idle(p, o.idle_seconds, level))
    rows = [
        [
            str(u.containers),
            f"{u.rss_mb:.1f}",
            f"{u.rss_max_mb:.1f}",
            f"{u.uss_mb:.1f}",
            f"< {RSS_GOAL_MB:g}  {'ok' if u.rss_max_mb < RSS_GOAL_MB else 'MISSED'}",
            f"{u.cpu_pct:.2f}",
            f"< {CPU_GOAL_PCT:g}  {'ok' if u.cpu_pct < CPU_GOAL_PCT else 'MISSED'}",
            str(u.threads),
            "-" if u.uevents is None else str(u.uevents),
        ]
        for u in usage
    ]
    say(
        table(
            [
                "containers",
                "RSS MB",
                "RSS max",
                "USS MB",
                "goal MB",
                "idle CPU %core",
                "goal %",
                "threads",
                "host uevents",
            ],
            rows,
        )
    )
    say(
        "  host uevents: kernel device events on this host during the window (veths of any "
        "container started or stopped here); the enforcer handles every one of them"
    )
    bench.stop_enforcer(enf)
    bench.clean_engine()
