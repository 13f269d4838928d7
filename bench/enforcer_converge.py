"""Converge: an application of N services by docker-compose, by Edgeward, and straight through
the Docker API (the engine's limit)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.common import Bench, labelled, median, note, ratio, say, secs, table, timed_cli
from bench.enforcer_options import API_SIDE, COMPOSE, HTTPD_CMD, LIMIT_GOAL, SLEEP_CMD, Options
from enforcer.config.model import EnforcerConfig
from tests.support.processes import wait_for


def app_spec(
    name: str, services: list[tuple[str, list[str]]], image: str, replicas: int = 1
) -> str:
    lines = [f"name: {name}", 'version: "1"', "services:"]
    for svc, cmd in services:
        lines += [
            f"  - name: {svc}",
            f"    replicas: {replicas}",
            "    containers:",
            "      - name: main",
            f"        image: {image}",
            f"        cmd: {yaml_list(cmd)}",
            "        stop-timeout: 2s",
        ]
    return "\n".join(lines) + "\n"


def compose_file(services: list[tuple[str, list[str]]], image: str) -> str:
    lines = ['version: "2.4"', "services:"]
    for svc, cmd in services:
        lines += [
            f"  {svc}:",
            f"    image: {image}",
            f"    command: {yaml_list(cmd)}",
            "    restart: always",
            "    stop_grace_period: 2s",
        ]
    return "\n".join(lines) + "\n"


def yaml_list(items: list[str]) -> str:
    return json.dumps(items)  # JSON is YAML


def services_of(count: int) -> list[tuple[str, list[str]]]:
    """Every fourth service a web server, the others sleepers."""
    return [(f"s{i:02d}", HTTPD_CMD if i % 4 == 3 else SLEEP_CMD) for i in range(count)]


def running_count(bench: Bench, label: str) -> int:
    return len(bench.docker.api.containers(filters={"label": label, "status": "running"}))


def wait_running(bench: Bench, label: str, count: int, timeout: float) -> None:
    wait_for(
        lambda: running_count(bench, label) >= count,
        timeout,
        f"{count} running containers labelled {label}",
        interval=0.1,
    )


@dataclass
class Converge:
    command: float  # the command returned
    running: float  # the last of the containers started (engine event)
    teardown: float = math.nan


def timed_up(
    bench: Bench, cmd: list[str], env: dict[str, str] | None, label: tuple[str, str], count: int
) -> Converge:
    events = bench.events
    assert events is not None
    t0 = time.time_ns()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    try:
        out, _ = proc.communicate(timeout=180)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    command = (time.time_ns() - t0) / 1e9
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {out.decode(errors='replace')[-2000:]}")
    starts = events.wait_count(t0, labelled(label[0], label[1], "start"), count, timeout=180)
    if len(starts) < count:
        raise RuntimeError(f"only {len(starts)} of {count} containers started")
    wait_running(bench, f"{label[0]}={label[1]}", count, 30)
    return Converge(command, (starts[-1].time_ns - t0) / 1e9)


def api_up(bench: Bench, svcs: list[tuple[str, list[str]]], parallelism: int) -> Converge:
    """The engine's limit: the same containers created and started straight through the Docker
    API, `parallelism` calls at a time (the enforcer's docker-parallelism), on a bridge network
    of their own as Edgeward's (created in the timed part, as both tools do)."""
    events = bench.events
    assert events is not None
    api = bench.docker.api
    t0 = time.time_ns()
    api.create_network("limit", driver="bridge", labels={"bench.limit": "conv"})

    def up(svc: str, cmd: list[str]) -> None:
        host = api.create_host_config(network_mode="limit", restart_policy={"Name": "no"})
        created = api.create_container(
            bench.image,
            cmd,
            name=f"limit-{svc}",
            labels={"bench.limit": "conv"},
            host_config=host,
            stop_timeout=2,
            detach=True,
        )
        api.start(created["Id"])

    with ThreadPoolExecutor(parallelism) as pool:
        list(pool.map(lambda sc: up(*sc), svcs))
    command = (time.time_ns() - t0) / 1e9
    starts = events.wait_count(t0, labelled("bench.limit", "conv", "start"), len(svcs), 60)
    if len(starts) < len(svcs):
        raise RuntimeError(f"only {len(starts)} of {len(svcs)} containers started")
    return Converge(command, (starts[-1].time_ns - t0) / 1e9)


def api_down(bench: Bench, parallelism: int) -> float:
    """Stop and remove them, and their network, through the API: the seconds it took."""
    api = bench.docker.api
    t0 = time.perf_counter()
    ids = [c["Id"] for c in api.containers(all=True, filters={"label": "bench.limit=conv"})]

    def down(cid: str) -> None:
        api.stop(cid, timeout=2)
        api.remove_container(cid)

    with ThreadPoolExecutor(parallelism) as pool:
        list(pool.map(down, ids))
    api.remove_network("limit")
    return time.perf_counter() - t0


def converge_bench(bench: Bench, o: Options) -> None:
    say(f"\n== 2. Converge: an application of {o.services} services, image present locally ==")
    enf = bench.enforcer("conv", o.log_level)
    svcs = services_of(o.services)
    cfile = enf.root / "docker-compose.yml"
    cfile.write_text(compose_file(svcs, bench.image))
    spec = enf.root / "conv.yaml"
    spec.write_text(app_spec("conv", svcs, bench.image))
    env = dict(os.environ, DOCKER_HOST=bench.url, COMPOSE_INTERACTIVE_NO_CLI="1")
    env.pop("DOCKER_CONTEXT", None)
    compose = [COMPOSE, "--no-ansi", "-p", "conv", "-f", str(cfile)]
    if not Path(COMPOSE).exists():
        raise RuntimeError(f"{COMPOSE} is not installed (apt-get install docker-compose)")
    results: dict[str, list[Converge]] = {"compose": [], "edgeward": [], "api": []}
    parallelism = EnforcerConfig().reconcile.docker_parallelism

    def run_compose() -> None:
        r = timed_up(
            bench, [*compose, "up", "-d"], env, ("com.docker.compose.project", "conv"), o.services
        )
        t0 = time.perf_counter()
        subprocess.run([*compose, "down"], env=env, check=True, capture_output=True, timeout=300)
        r.teardown = time.perf_counter() - t0
        results["compose"].append(r)
        note(f"docker-compose: all running after {secs(r.running)}, down {secs(r.teardown)}")

    def run_edgeward() -> None:
        cmd = enf.command("apply", "-f", str(spec))
        r = timed_up(bench, cmd, None, ("edgeward.app", "conv"), o.services)
        r.teardown = timed_cli(enf, "rm", "conv", timeout=300)
        wait_for(lambda: running_count(bench, "edgeward.app=conv") == 0, 60, "rm conv")
        results["edgeward"].append(r)
        note(f"edgeward: all running after {secs(r.running)}, rm {secs(r.teardown)}")

    def run_api() -> None:
        r = api_up(bench, svcs, parallelism)
        r.teardown = api_down(bench, parallelism)
        results["api"].append(r)
        note(f"Docker API: all running after {secs(r.running)}, down {secs(r.teardown)}")

    sides = [run_compose, run_edgeward, run_api]
    for i in range(o.runs):
        for k in range(len(sides)):
            sides[(i + k) % len(sides)]()
    c, e, a = results["compose"], results["edgeward"], results["api"]
    rows = []
    for what, attr in (
        (f"all {o.services} running", "running"),
        ("command returned", "command"),
        ("teardown (down / rm)", "teardown"),
    ):
        mc, me, ma = (median([float(getattr(r, attr)) for r in rs]) for rs in (c, e, a))
        rows.append([what, secs(mc), secs(me), secs(ma), ratio(me, mc), ratio(me, ma)])
    say(
        f"  median of {o.runs} runs per side (rotating), from the command; the limit: the same "
        f"containers through the Docker API, {parallelism} calls at a time, on a bridge network"
    )
    headers = ["", "docker-compose up -d", "edge-enforcer apply", API_SIDE]
    say(table([*headers, "Edgeward/compose", "Edgeward/limit"], rows))
    mc, me, ma = (median([r.running for r in rs]) for rs in (c, e, a))
    say(f"  goal: Edgeward faster to all running than compose: {'met' if me < mc else 'MISSED'}")
    verdict = "met" if me <= LIMIT_GOAL * ma else "MISSED"
    say(f"  goal: Edgeward within {LIMIT_GOAL:.2f}x of the limit to all running: {verdict}")
    say(
        "  runs (all running): compose "
        + ", ".join(secs(r.running) for r in c)
        + "; edgeward "
        + ", ".join(secs(r.running) for r in e)
        + "; limit "
        + ", ".join(secs(r.running) for r in a)
    )
    bench.stop_enforcer(enf)
    bench.clean_engine()
