"""A fleet rollout with health gates, measured: one real control, simulated sites over real TLS.

The sites run in worker processes (`python -m bench.bench_rollout --worker DIR --port PORT`):
each enrolls with the enforcer's own `enroll`, long-polls its desired state over mutual TLS and
reports its application's instance as a real site does — running and ready at the version it
was given, or, for a version whose name starts with "bad", crash-looping (`backoff` after 5
restarts). The deployment: canary sites (label `canary=yes`, 1 % of the fleet) first, then
`sites-in-parallel` sites at a time, `healthy-time` 2 s. Printed:

- push to all sites healthy on a good version (the deployment `done`), and control's CPU;
- first failing canary report to every site back on the previous version (a bad version).

    .venv/bin/python -m bench.bench_rollout --sites 1000 --parallel 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/bench_rollout.py`: the repository's packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import fleet_sites
from bench.fleet_clients import LightSite, commands, enroll_slice, reply
from bench.fleet_sites import app_doc, running_fleet
from enforcer.link.enrollment import load_site_identity

HEALTHY_TIME = "2s"
ROOT = Path(__file__).resolve().parent.parent


class ReportingSite(LightSite):
    """A LightSite whose status says what a real one would of the version it was given."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.version = ""
        self.failed_reported: dict[str, float] = {}  # version -> first report of a crash loop
        self.got: dict[str, float] = {}  # version -> when it was last given

    def _apply(self, doc: dict[str, Any], now: float) -> None:
        super()._apply(doc, now)
        versions = [a["version"] for a in doc["applications"] if a["name"] == "fleet"]
        version = versions[0] if versions else ""
        if version != self.version:
            self.got[version] = now
        self.version = version

    async def _push(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.seq += 1
        bad = self.version.startswith("bad")
        instance = {
            "id": "fleet.main.0", "app": "fleet", "version": self.version, "service": "main",
            "host": "h", "state": "backoff" if bad else "running", "ready": not bad,
            "restarts": 5 if bad else 0, "reason": "main exited (1)" if bad else "",
        }  # fmt: skip
        if bad:
            self.failed_reported.setdefault(self.version, time.time())
        status = {"revision": self.revision, "instances": [instance] if self.version else []}
        body = json.dumps({"seq": self.seq, "status": status, "events": []}).encode()
        writer.write(self._request("POST", "/v1/sync/status", body))
        code, answer = await self._response(reader)
        if code == 409:
            self.seq = json.loads(answer)["error"]["expected"] - 1


async def worker_main(root: Path, port: int) -> None:
    """One JSON command per line on stdin, one answer per line on stdout."""
    logging.getLogger().setLevel(logging.ERROR)
    sites: list[ReportingSite] = []
    tasks: list[asyncio.Task[None]] = []
    async for command in commands():
        if command["cmd"] == "enroll":
            reply(await enroll_slice(root, command["bundles"], 32))
        elif command["cmd"] == "sync":
            for name in command["sites"]:
                identity = load_site_identity(root / name)
                assert identity is not None
                sites.append(ReportingSite(identity, "127.0.0.1", port))
            handshakes = asyncio.Semaphore(64)
            tasks = [asyncio.create_task(s.run(handshakes)) for s in sites]
            reply({"started": len(sites)})
        elif command["cmd"] == "report":
            reply({
                "versions": [s.version for s in sites],
                "failed": [min(s.failed_reported.values()) for s in sites if s.failed_reported],
                "got": [s.got.get(command["version"]) for s in sites],
            })  # fmt: skip
        elif command["cmd"] == "stop":
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            reply({"stopped": True})
            return


class Worker(fleet_sites.Worker):
    """A fleet bench worker process running this module's `worker_main` (ask/kill inherited)."""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "nice", "-n", "5", sys.executable, "-m", "bench.bench_rollout", "--worker",
            str(self.root), "--port", str(self.port),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**26, cwd=ROOT,
        )  # fmt: skip


async def wait_phase(control: Any, phases: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = await control.call("GET", "/v1/deployments/fleet")
        if status["phase"] in phases or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.25)


async def run(n: int, parallel: int, workers: int) -> None:
    canaries = max(1, n // 100)
    async with running_fleet("bench-rollout-", keep=False) as fleet:
        control = fleet.control
        await control.call("PUT", "/v1/applications/fleet/versions/1", app_doc("1"))
        async with control.session() as s:
            limit = asyncio.Semaphore(32)

            async def issue(i: int) -> str:
                labels = {"canary": "yes"} if i < canaries else {}
                body = {"site": f"site-{i:05d}", "labels": labels}
                async with limit, s.post(control.url + "/v1/enrollment/tokens", json=body) as r:
                    return str((await r.json())["bundle"])

            bundles = await asyncio.gather(*(issue(i) for i in range(n)))
        pool = [Worker(fleet.root / "sites", control.port) for _ in range(workers)]
        try:
            for w in pool:
                await w.start()
            await asyncio.gather(*(w.ask({"cmd": "enroll", "bundles": bundles[i::workers]})
                                   for i, w in enumerate(pool)))  # fmt: skip
            names = [f"site-{i:05d}" for i in range(n)]
            await asyncio.gather(*(w.ask({"cmd": "sync", "sites": names[i::workers]})
                                   for i, w in enumerate(pool)))  # fmt: skip
            deployment = {
                "name": "fleet", "application": "fleet", "version": "latest",
                "placement": {"all-sites": True},
                "strategy": {"canary-sites": "canary = yes", "canary-healthy-time": HEALTHY_TIME,
                             "sites-in-parallel": parallel, "healthy-time": HEALTHY_TIME},
            }  # fmt: skip
            await control.call("PUT", "/v1/deployments/fleet", deployment)
            first = await wait_phase(control, {"done", "paused", "rolled-back"}, 600)
            print(f"[{n}] version 1 everywhere: {first['phase']}", flush=True)

            await control.call("PUT", "/v1/applications/fleet/versions/2", app_doc("2"))
            cpu0, t0 = control.cpu_seconds(), time.monotonic()
            done = await wait_phase(control, {"done", "paused", "rolled-back"}, 900)
            good_s = time.monotonic() - t0
            good_cpu = (control.cpu_seconds() - cpu0) / good_s
            print(f"[{n}] good version: {done['phase']} in {good_s:.1f}s", flush=True)

            await control.call("PUT", "/v1/applications/fleet/versions/bad-3", app_doc("bad-3"))
            back = await wait_phase(control, {"rolled-back", "done", "paused"}, 600)
            reports = await asyncio.gather(*(w.ask({"cmd": "report", "version": "2"})
                                             for w in pool))  # fmt: skip
            deadline = time.monotonic() + 120
            while not all(v == "2" for r in reports for v in r["versions"]):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
                reports = await asyncio.gather(*(w.ask({"cmd": "report", "version": "2"})
                                                 for w in pool))  # fmt: skip
            failed_at = min(t for r in reports for t in r["failed"])
            back_at = max(t for r in reports for t in r["got"] if t is not None)
            on_two = sum(v == "2" for r in reports for v in r["versions"])
            for w in pool:
                await w.ask({"cmd": "stop"})
        finally:
            for w in pool:
                w.kill()
    print()
    print(f"rollout across {n} simulated sites, sites-in-parallel {parallel}, "
          f"{canaries} canaries, healthy-time {HEALTHY_TIME}:")  # fmt: skip
    batches = -(-(n - canaries) // parallel)
    floor = (batches + 1) * 2.0
    print(f"  push -> all {n} sites healthy:        {good_s:6.1f} s "
          f"(floor {floor:.0f} s: {batches} batches + canary x {HEALTHY_TIME})")  # fmt: skip
    print(f"  control CPU during the rollout:       {good_cpu * 100:6.1f} % of a core")
    print(f"  first failing canary report -> all back on the previous version: "
          f"{back_at - failed_at:6.2f} s ({back['phase']}; {on_two}/{n} sites on 2)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        asyncio.run(worker_main(args.worker, args.port))
        return
    os.environ.setdefault("EDGEWARD_LOG_LEVEL", "WARNING")
    asyncio.run(run(args.sites, args.parallel, args.workers))


if __name__ == "__main__":
    main()
