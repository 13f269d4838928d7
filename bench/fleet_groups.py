"""The control setups that the fleet bench puts side by side, and the death of one process.

- ``sqlite``: one `edge-control serve` on SQLite, the embedded default; sites connect to it;
- ``postgresql-2``, ``postgresql-3``: two or three control processes on one PostgreSQL database
  (`tests.support.postgres`: Debian's PostgreSQL 15, `initdb` in a temporary directory), with
  Debian's HAProxy in front (`tests.support.haproxy`: the shipped example configuration, TCP
  mode, TLS passing through). Sites enroll and sync through HAProxy's one URL; the operator's
  calls go to the first process, so a change reaches most sites through another process's
  wake-up (LISTEN/NOTIFY).

HAProxy holds two files per connection (the site's and control's) and one process may open
only `ulimit -Hn` files, so where one HAProxy cannot hold the whole fleet, more HAProxy
processes share its port (``SO_REUSEPORT``: the kernel spreads new connections over them), the
way a larger installation spreads one address over several balancers; the bench says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil

from bench.common import median
from bench.fleet_sites import Fleet, app_doc, fleet_stopped, metric, running_fleet
from tests.support.haproxy import HAProxy
from tests.support.postgres import PostgresCluster, control_processes, stop_all
from tests.support.processes import free_port

SETUPS = {"sqlite": 1, "postgresql-2": 2, "postgresql-3": 3}  # name -> control processes
HAPROXY_SPARE_FILES = 40  # its listeners, health checks, log and the like (2.6: 19 + margin)
HAPROXY_SPARE_CONNECTIONS = 100  # the byte probe, enrollments in flight, sites reconnecting


def setup_label(setup: str) -> str:
    """A table header's words for a setup."""
    count = SETUPS[setup]
    return "1 on SQLite" if setup == "sqlite" else f"{count} on PG + HAProxy"


def haproxy_maxconn(open_files: int) -> int:
    """The most connections one HAProxy can hold with `open_files` files (two each)."""
    return (open_files - HAPROXY_SPARE_FILES) // 2


def haproxies_for(sites: int, open_files: int) -> int:
    """How many HAProxy processes (sharing one port) a fleet of `sites` needs."""
    per_process = haproxy_maxconn(open_files) - HAPROXY_SPARE_CONNECTIONS
    if per_process < 1:
        raise ValueError(f"{open_files} open files leave HAProxy no room for connections")
    return max(1, math.ceil(sites / per_process))


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, its children that it reaped and those running now (the
    postmaster and its backends)."""
    root = psutil.Process(pid)
    t = root.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            c = child.cpu_times()
            total += c.user + c.system
    return float(total)


def haproxy_cpu_seconds(haproxies: list[HAProxy]) -> float:
    return sum(tree_cpu_seconds(h.proc.pid) for h in haproxies if h.proc is not None)


@contextlib.asynccontextmanager
async def running_group(
    setup: str,
    sites: int,
    keep: bool,
    open_files: int,
    nice: int = 0,
    python_args: tuple[str, ...] = (),
) -> AsyncIterator[Fleet]:
    """A started `setup` (see `SETUPS`) ready for `sites` sites; everything it started is
    stopped by pid and its directory removed afterwards (unless `keep`). `python_args` (the
    bench's profiler) apply to the single SQLite process only."""
    if SETUPS[setup] == 1:
        prefix = f"edgeward-fleet-{sites}-"
        async with running_fleet(prefix, keep, python_args, nice) as fleet:
            yield fleet
        return
    root = Path(tempfile.mkdtemp(prefix=f"edgeward-fleet-{setup}-{sites}-"))
    cluster = PostgresCluster()
    haproxies: list[HAProxy] = []
    fleet = Fleet(root, [], free_port(), nice=nice)

    def stop() -> None:
        for haproxy in haproxies:
            haproxy.stop()
        stop_all(fleet.processes)
        cluster.stop()

    async with fleet_stopped(fleet, keep, stop):
        cluster.start()
        fleet.processes.extend(
            control_processes(cluster, root, SETUPS[setup], f"https://127.0.0.1:{fleet.port}")
        )
        for n in range(haproxies_for(sites, open_files)):
            (root / f"haproxy-{n}").mkdir()
            haproxies.append(
                HAProxy(
                    root / f"haproxy-{n}",
                    [p.port for p in fleet.processes],
                    fleet.port,
                    haproxy_maxconn(open_files),
                )
            )
            haproxies[-1].start()
        assert cluster.proc is not None
        postmaster = cluster.proc.pid
        fleet.helpers["postgresql"] = lambda: tree_cpu_seconds(postmaster)
        fleet.helpers["haproxy"] = lambda: haproxy_cpu_seconds(haproxies)
        print(
            f"[{sites}] {setup}: {len(fleet.processes)} control processes on PostgreSQL, "
            f"{len(haproxies)} HAProxy process(es) on port {fleet.port}",
            flush=True,
        )
        yield fleet


async def kill_one(fleet: Fleet, n: int, version: str, wait_limit: float) -> dict[str, Any]:
    """SIGKILL the control process holding the most long-polls, push `version` through another
    at once, and measure: how many sites lost their connection, how long after the kill each
    site had `version` (p50, max) and how long until every site held a long-poll again."""
    texts = await asyncio.gather(*(p.call("GET", "/v1/metrics") for p in fleet.processes))
    held = [metric(t, "sites_polling") for t in texts]
    victim = fleet.processes[held.index(max(held))]
    survivor = next(p for p in fleet.processes if p is not victim)
    others = [t for t, p in zip(texts, fleet.processes, strict=True) if p is not victim]
    shed0 = sum(metric(t, "http_shed_total") for t in others)
    await asyncio.gather(*(w.ask({"cmd": "mark"}) for w in fleet.pool))

    killed = time.time()
    expect = [
        asyncio.create_task(
            w.ask({"cmd": "expect", "version": version, "t0": killed, "timeout": wait_limit})
        )
        for w in fleet.pool
    ]
    await asyncio.to_thread(victim.stop, True)  # SIGKILL, and reaped
    await survivor.call("PUT", f"/v1/applications/fleet/versions/{version}", app_doc(version))
    print(f"[{n}] killed a control process holding {max(held):.0f} long-polls", flush=True)

    repolled = math.nan
    while time.time() - killed < wait_limit:
        with contextlib.suppress(Exception):  # a survivor too busy to answer: ask again
            if await fleet.metric("sites_polling") >= n:
                repolled = time.time() - killed
                break
        await asyncio.sleep(0.5)
    answers = await asyncio.gather(*expect)
    back = sorted(x for a in answers for x in a["latencies"])
    result = {
        "held_by_killed": int(max(held)),
        "lost": sum(a["dropped"] for a in answers),
        "resync_missing": sum(a["missing"] for a in answers),
        "resync_p50": median(back),
        "resync_max": back[-1] if back else math.nan,
        "repolled": repolled,
        "kill_shed": int(await fleet.metric("http_shed_total") - shed0),
    }
    print(
        f"[{n}] {result['lost']} sites lost their long-poll; all had version {version} "
        f"{result['resync_max']:.1f}s after the kill",
        flush=True,
    )
    return result
