"""The site network (issue 16): two instances on different hosts over WireGuard against the
same two on one host, side by side, on this machine's network namespaces.

Two namespaced hosts (`tests.support.netns.network_site`: each its own dockerd and enforcer,
the site's etcd on the LAN bridge) run one application: an httpd `server` on host 2, a client
`far` on host 1 and a client `near` on host 2. Each client, in turn:

  throughput  fetches a file of --megabytes from the server (busybox wget to /dev/null),
              timed from outside around `docker exec`; the best of --runs.
  latency     fetches the small index page --requests times in one shell loop (each fetch a
              new TCP connection, as wget does); the mean per request, best of --runs.
  cpu         the CPU (user + system, % of one core) the wireguard-go of each host used during
              the far client's throughput runs, and the whole enforcer's.

This kernel has no WireGuard module, so the tunnel is Debian's wireguard-go (userspace); a
kernel with WireGuard would use it instead, at a lower cost.

    .venv/bin/python bench/bench_sitenet.py
    .venv/bin/python bench/bench_sitenet.py --megabytes 32 --runs 2 --requests 50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.apps import app, sleeper, web
from tests.support.netns import IMAGE, address_of, fetch, network_site, wait_running


def timed(container: Any, cmd: list[str]) -> float:
    started = time.perf_counter()
    code, out = container.exec_run(cmd)
    took = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}): {out.decode(errors='replace')}")
    return took


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megabytes", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=100)
    args = ap.parse_args()

    with network_site(2) as (_, (h1, h2)):
        h1.enforcer.apply(
            app(
                "bench",
                web("server", IMAGE, placement={"match-host-labels": "role = h2"}),
                sleeper("far", IMAGE, placement={"match-host-labels": "role = h1"}),
                sleeper("near", IMAGE, placement={"match-host-labels": "role = h2"}),
            )
        )
        server = wait_running(h2, "bench.server.0")
        clients = {"far": wait_running(h1, "bench.far.0"), "near": wait_running(h2, "bench.near.0")}
        target = address_of(server)
        server.exec_run(["dd", "if=/dev/zero", "of=/www/big", "bs=1M", f"count={args.megabytes}"])
        for c in clients.values():  # the tunnel (and the server) answer before timing
            code, out = fetch(c, f"http://{target}:8080/", 20)
            if code != 0:
                raise RuntimeError(f"the client cannot reach the server: {out}")

        tunnels = {"host 1": h1.wireguard_go(), "host 2": h2.wireguard_go()}
        enforcers = {"host 1": [h1.enforcer.process()], "host 2": [h2.enforcer.process()]}
        big = ["wget", "-q", "-O", "/dev/null", f"http://{target}:8080/big"]
        loop = [
            "sh",
            "-c",
            f"for i in $(seq {args.requests}); do "
            f"wget -q -O /dev/null http://{target}:8080/ || exit 1; done",
        ]
        results: dict[str, dict[str, float]] = {}
        cpu: dict[str, dict[str, float]] = {}
        for name, c in clients.items():
            before = {h: cpu_seconds(p) for h, p in {**tunnels}.items()}
            before_e = {h: cpu_seconds(p) for h, p in enforcers.items()}
            wall0 = time.perf_counter()
            tput = min(timed(c, big) for _ in range(args.runs))
            wall = time.perf_counter() - wall0
            if name == "far":
                cpu["wireguard-go"] = {
                    h: 100 * (cpu_seconds(p) - before[h]) / wall for h, p in tunnels.items()
                }
                cpu["enforcer"] = {
                    h: 100 * (cpu_seconds(p) - before_e[h]) / wall for h, p in enforcers.items()
                }
            lat = min(timed(c, loop) for _ in range(args.runs)) / args.requests
            results[name] = {"mbps": args.megabytes * 8 / tput, "ms": lat * 1000}

    far, near = results["far"], results["near"]
    print(f"site network bench: {args.megabytes} MB x best of {args.runs}, "
          f"{args.requests} requests per latency run (wireguard-go)")  # fmt: skip
    print(f"{'':28}{'other host (WireGuard)':>24}{'same host (bridge)':>22}{'ratio':>8}")
    print(f"{'throughput, Mbit/s':28}{far['mbps']:>24.0f}{near['mbps']:>22.0f}"
          f"{far['mbps'] / near['mbps']:>8.2f}")  # fmt: skip
    print(f"{'latency per request, ms':28}{far['ms']:>24.2f}{near['ms']:>22.2f}"
          f"{far['ms'] / near['ms']:>8.2f}")  # fmt: skip
    for what, per_host in cpu.items():
        shown = ", ".join(f"{h} {v:.0f}%" for h, v in per_host.items())
        print(f"CPU of {what} during the cross-host transfers (% of one core): {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
