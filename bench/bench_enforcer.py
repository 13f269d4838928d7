"""The enforcer against Docker's own tools, side by side on one private engine (issue 2).

1. heal      Heal time after a crash: containers run with Docker's own `--restart always`
             against Edgeward-managed containers. A crash is SIGKILL of the container's main
             process from the host (what a real crash looks like to the engine); measured from
             the kill to the engine's `start` event of that container, taken from the engine's
             event stream (timeNano). Each container is crashed once after a stable run (first
             crash), then one container of each side is crashed repeatedly (crash loop, both
             sides back off), and one of each is stopped with `docker kill` through the API.
2. converge  An application of 20 busybox services (`sleep` or `httpd`) from a locally present
             image: `docker-compose up -d` (Debian's v1) of the equivalent compose file against
             `edge-enforcer apply -f`, from the command to the 20th container's `start` event.
             Torn down between runs (`docker-compose down`, `edge-enforcer rm`).
3. resources The enforcer daemon's resident memory (psutil RSS) and idle CPU (% of one core from
             cpu_times deltas, children included) with 0, 20 and 50 managed containers.

Everything runs on a private dockerd and registry from `tests.realparts`, and the enforcer is a
real subprocess (`python -m enforcer --config CFG run`); all of it is stopped and removed on
exit, errors, Ctrl-C and SIGTERM.

    .venv/bin/python bench/bench_enforcer.py                 # all, about 4-6 minutes
    .venv/bin/python bench/bench_enforcer.py --quick         # all, small, about 2 minutes
    .venv/bin/python bench/bench_enforcer.py --heal --kills 5
    .venv/bin/python bench/bench_enforcer.py --resources --levels 0,20 --idle-seconds 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench.common import (
    Bench,
    Enforcer,
    EngineEvent,
    UeventCounter,
    labelled,
    machine_line,
    median,
    note,
    percentile,
    ratio,
    say,
    secs,
    table,
    wait_until,
)
from enforcer.config.load import EnforcerConfig

COMPOSE = "/usr/bin/docker-compose"
RSS_GOAL_MB = 60.0
CPU_GOAL_PCT = 1.0
HEAL_GOAL = 1.2  # Edgeward's median heal time at most this times Docker's own
STABLE = 1.0  # a healed container must stay up this long before the next kill
# PID 1 ignores SIGTERM unless it handles it: the services exit on SIGTERM, so that teardown
# (either tool's) is not ten seconds of stop timeout per container.
SLEEP_CMD = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
HTTPD_CMD = ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]


@dataclass
class Options:
    heal: bool = True
    converge: bool = True
    resources: bool = True
    kills: int = 10
    loop_kills: int = 4
    heal_budget: float = 120.0
    services: int = 20
    runs: int = 3
    levels: tuple[int, ...] = (0, 20, 50)
    idle_seconds: float = 30.0
    log_level: str = "INFO"
    keep: bool = False


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(
        description="Edgeward's enforcer against Docker's restart policy and docker-compose; "
        "with no --heal/--converge/--resources, all three."
    )
    p.add_argument("--heal", action="store_true", help="run the heal benchmark")
    p.add_argument("--converge", action="store_true", help="run the converge benchmark")
    p.add_argument("--resources", action="store_true", help="run the memory/idle CPU benchmark")
    p.add_argument("--quick", action="store_true", help="small sizes for a fast check")
    p.add_argument("--kills", type=int, default=None, help="first crashes per side [10]")
    p.add_argument("--loop-kills", type=int, default=None, help="crash-loop kills per side [4]")
    p.add_argument(
        "--heal-budget",
        type=float,
        default=None,
        help="seconds the heal benchmark may take before it stops killing [120]",
    )
    p.add_argument("--services", type=int, default=None, help="services of the app [20]")
    p.add_argument("--runs", type=int, default=None, help="converge runs per side [3]")
    p.add_argument(
        "--levels", default=None, help="managed containers for the resource table [0,20,50]"
    )
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=None,
        help="idle window per level; the default equals the enforcer's resync interval [30]",
    )
    p.add_argument("--log-level", default="INFO", help="the enforcer's EDGEWARD_LOG_LEVEL [INFO]")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    a = p.parse_args(argv)
    o = Options(log_level=a.log_level, keep=a.keep)
    if a.heal or a.converge or a.resources:
        o.heal, o.converge, o.resources = a.heal, a.converge, a.resources
    if a.quick:
        o.kills, o.loop_kills, o.heal_budget = 3, 3, 75.0
        o.services, o.runs, o.levels, o.idle_seconds = 5, 1, (0, 10), 8.0
    for name in ("kills", "loop_kills", "heal_budget", "services", "runs", "idle_seconds"):
        if getattr(a, name) is not None:
            setattr(o, name, getattr(a, name))
    if a.levels is not None:
        o.levels = tuple(int(x) for x in a.levels.split(",") if x.strip())
    if o.kills < 1 or o.loop_kills < 0 or o.services < 1 or o.runs < 1 or o.idle_seconds <= 0:
        p.error("sizes must be positive")
    return o


# --- heal ----------------------------------------------------------------------------------


@dataclass
class Target:
    """One container to crash: found by a label, since a restarter may replace it."""

    side: str  # "docker" | "edgeward"
    key: str
    value: str

    def match(self, action: str) -> Callable[[EngineEvent], bool]:
        return labelled(self.key, self.value, action)


@dataclass
class Heal:
    """One crash: kill -> die (the engine saw it) -> start (the restarter brought it back)."""

    kill_ns: int
    die_ns: int | None = None
    start_ns: int | None = None
    stable: bool = True

    @property
    def total(self) -> float:
        return math.nan if self.start_ns is None else (self.start_ns - self.kill_ns) / 1e9

    @property
    def reaction(self) -> float:
        if self.start_ns is None or self.die_ns is None:
            return math.nan
        return (self.start_ns - self.die_ns) / 1e9


@dataclass
class HealRun:
    bench: Bench
    deadline: float
    results: dict[str, list[Heal]] = field(default_factory=lambda: {"docker": [], "edgeward": []})

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def container(self, t: Target) -> dict[str, object]:
        found = self.bench.docker.api.containers(filters={"label": f"{t.key}={t.value}"})
        if not found:
            raise RuntimeError(f"no container labelled {t.key}={t.value}")
        return dict(self.bench.docker.api.inspect_container(found[0]["Id"]))

    def running(self, t: Target) -> bool:
        state = self.container(t)["State"]
        return isinstance(state, dict) and bool(state.get("Running"))

    def crash(self, t: Target, via_api: bool = False, timeout: float = 45.0) -> Heal:
        events = self.bench.events
        assert events is not None
        state = self.container(t)["State"]
        assert isinstance(state, dict)
        if not state.get("Running"):  # a previous kill that did not heal in time
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: self.running(t), 40, t.value)
            state = self.container(t)["State"]
            assert isinstance(state, dict)
            if not state.get("Running"):
                return Heal(time.time_ns())  # not killed: counts as not healed
        kill_ns = time.time_ns()
        if via_api:
            self.bench.docker.api.kill(str(self.container(t)["Id"]))
        else:
            os.kill(int(state["Pid"]), signal.SIGKILL)
        heal = Heal(kill_ns)
        die = events.wait(t.match("die"), 10, after_ns=kill_ns)
        heal.die_ns = die.time_ns if die else None
        start = events.wait(t.match("start"), timeout, after_ns=kill_ns)
        if start is None:
            return heal
        heal.start_ns = start.time_ns
        time.sleep(STABLE)
        after = self.container(t)["State"]
        assert isinstance(after, dict)
        heal.stable = bool(after.get("Running")) and not events.since(
            start.time_ns + 1, t.match("die")
        )
        return heal


def heal_bench(bench: Bench, o: Options) -> None:
    say("== 1. Heal time after a crash (SIGKILL of the container's main process) ==")
    n = o.kills + (1 if o.loop_kills else 0) + 1
    enf = bench.enforcer("heal", o.log_level)
    cfg = EnforcerConfig()
    say(
        f"  enforcer defaults: restart initial-delay {cfg.restart.initial_delay:g} s, "
        f"reset-after {cfg.restart.reset_after:g} s, resync-interval "
        f"{cfg.reconcile.resync_interval:g} s; Docker: 100 ms doubling, reset after 10 s up"
    )
    net = bench.docker.networks.create("bench-heal", driver="bridge")
    docker_targets, ew_targets = [], []
    for i in range(n):
        bench.docker.containers.run(
            bench.image,
            SLEEP_CMD,
            name=f"dk-heal-{i}",
            detach=True,
            network=net.name,
            restart_policy={"Name": "always"},
            labels={"bench.target": f"dk-heal-{i}"},
        )
        docker_targets.append(Target("docker", "bench.target", f"dk-heal-{i}"))
        ew_targets.append(Target("edgeward", "edgeward.instance", f"heal.svc.{i}"))
    spec = enf.root / "heal.yaml"
    spec.write_text(app_spec("heal", [("svc", SLEEP_CMD)], replicas=n, image=bench.image))
    enf.cli("apply", "-f", str(spec))
    wait_running(bench, "edgeward.app=heal", n, 120)
    time.sleep(2)  # everything settled: probes, firewall, events stored

    start = time.monotonic()
    run = HealRun(bench, deadline=start + o.heal_budget * 0.6)
    done = 0
    for i in range(o.kills):
        if run.left() <= 0:
            break
        pair = [docker_targets[i], ew_targets[i]]
        for t in pair if i % 2 == 0 else pair[::-1]:
            h = run.crash(t)
            run.results[t.side].append(h)
            note(f"first crash {i + 1}/{o.kills} {t.side}: {secs(h.total)}")
        done += 1
    d, e = run.results["docker"], run.results["edgeward"]
    dt, et = [h.total for h in d], [h.total for h in e]
    rows = [
        [
            side,
            str(len(hs)),
            str(sum(1 for h in hs if h.start_ns is None)),
            secs(median(valid(xs))),
            secs(percentile(valid(xs), 90)),
            secs(max(valid(xs), default=math.nan)),
            secs(median(valid([h.reaction for h in hs]))),
        ]
        for side, hs, xs in (("Docker --restart always", d, dt), ("Edgeward", e, et))
    ]
    stopped = "" if done == o.kills else " (stopped: --heal-budget spent)"
    say(
        f"\n  first crash after a stable run, {done} of {o.kills} kills per side "
        f"(alternating){stopped}:"
    )
    say(table(["", "kills", "not healed", "median", "p90", "max", "die->start med"], rows))
    m_d, m_e = median(valid(dt)), median(valid(et))
    unhealed = sum(1 for h in e if h.start_ns is None)
    if unhealed:
        m_e = math.inf  # a kill that never healed within the timeout
    verdict = "met" if m_e <= HEAL_GOAL * m_d else "MISSED"
    say(
        f"  Edgeward / Docker (median): {ratio(m_e, m_d) if unhealed == 0 else 'inf'}"
        f"   goal <= {HEAL_GOAL:.1f}x: {verdict}"
    )
    unstable = [
        side for side, hs in (("docker", d), ("edgeward", e)) if any(not h.stable for h in hs)
    ]
    if unstable:
        say(f"  note: died again within {STABLE:g} s of a heal: {', '.join(unstable)}")

    if o.loop_kills:
        loop = HealRun(bench, deadline=start + o.heal_budget * 0.85)
        dt_, et_ = docker_targets[o.kills], ew_targets[o.kills]
        for _ in range(o.loop_kills):
            for t in (dt_, et_):
                if loop.left() <= 0 and len(loop.results[t.side]) >= 1:
                    continue
                h = loop.crash(t, timeout=60)
                loop.results[t.side].append(h)
                note(f"crash loop {t.side}: {secs(h.total)}")
        say(
            f"\n  crash loop: one container per side killed {o.loop_kills} times, each after "
            f"{STABLE:g} s up (both back off):"
        )
        rows = []
        for k in range(o.loop_kills):
            dh = loop.results["docker"][k] if k < len(loop.results["docker"]) else None
            eh = loop.results["edgeward"][k] if k < len(loop.results["edgeward"]) else None
            dv = dh.total if dh else math.nan
            ev = eh.total if eh else math.nan
            rows.append([f"kill {k + 1}", loop_cell(dh), loop_cell(eh), ratio(ev, dv)])
        rows.append(
            [
                "sum",
                secs(sum(valid([h.total for h in loop.results["docker"]]))),
                secs(sum(valid([h.total for h in loop.results["edgeward"]]))),
                "",
            ]
        )
        say(table(["", "Docker", "Edgeward", "ratio"], rows))
        if any(len(hs) < o.loop_kills for hs in loop.results.values()):
            say("  (stopped early: --heal-budget spent; '-' is a kill not made)")

    api = HealRun(bench, deadline=math.inf)  # one kill each, bounded by its own timeouts
    dh = api.crash(docker_targets[-1], via_api=True, timeout=5)
    eh = api.crash(ew_targets[-1], via_api=True, timeout=40)
    say("\n  `docker kill` through the API (a manual stop, not a crash, to Docker):")
    say(
        table(
            ["", "Docker --restart always", "Edgeward"],
            [["back up after", describe_heal(dh, 5), describe_heal(eh, 40)]],
        )
    )
    say(f"  (heal benchmark took {time.monotonic() - start:.0f} s)")
    bench.stop_enforcer(enf)
    bench.clean_engine()


def loop_cell(h: Heal | None) -> str:
    if h is None:
        return "-"
    return "not healed" if h.start_ns is None else secs(h.total)


def describe_heal(h: Heal, waited: float) -> str:
    return f"not within {waited:g} s" if h.start_ns is None else secs(h.total)


def valid(xs: list[float]) -> list[float]:
    return [x for x in xs if not math.isnan(x)]


# --- converge ------------------------------------------------------------------------------


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
    wait_until(
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
    results: dict[str, list[Converge]] = {"compose": [], "edgeward": []}

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
        cmd = [*enforcer_cli(enf), "apply", "-f", str(spec)]
        r = timed_up(bench, cmd, None, ("edgeward.app", "conv"), o.services)
        r.teardown = enf.cli("rm", "conv", timeout=300)
        wait_until(lambda: running_count(bench, "edgeward.app=conv") == 0, 60, "rm conv")
        results["edgeward"].append(r)
        note(f"edgeward: all running after {secs(r.running)}, rm {secs(r.teardown)}")

    for i in range(o.runs):
        for fn in (run_compose, run_edgeward) if i % 2 == 0 else (run_edgeward, run_compose):
            fn()
    c, e = results["compose"], results["edgeward"]
    rows = []
    for what, attr in (
        (f"all {o.services} running", "running"),
        ("command returned", "command"),
        ("teardown (down / rm)", "teardown"),
    ):
        mc = median([float(getattr(r, attr)) for r in c])
        me = median([float(getattr(r, attr)) for r in e])
        rows.append([what, secs(mc), secs(me), ratio(me, mc)])
    say(f"  median of {o.runs} runs per side (alternating), from the command:")
    say(table(["", "docker-compose up -d", "edge-enforcer apply", "Edgeward/compose"], rows))
    mc, me = median([r.running for r in c]), median([r.running for r in e])
    say(f"  goal: Edgeward faster to all running: {'met' if me < mc else 'MISSED'}")
    say(
        "  runs (all running): compose "
        + ", ".join(secs(r.running) for r in c)
        + "; edgeward "
        + ", ".join(secs(r.running) for r in e)
    )
    bench.stop_enforcer(enf)
    bench.clean_engine()


def enforcer_cli(enf: Enforcer) -> list[str]:
    from bench.common import enforcer_command

    return [*enforcer_command(), "--config", str(enf.config_path)]


# --- resources -----------------------------------------------------------------------------


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
            enf.cli("apply", "-f", str(spec))
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


# --- main ----------------------------------------------------------------------------------


@contextlib.contextmanager
def section(bench: Bench, name: str) -> Iterator[None]:
    t0 = time.monotonic()
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        say(f"  {name} FAILED: {type(exc).__name__}: {exc}")
        for enf in list(bench.enforcers):
            note(f"enforcer log: {enf.log_path}")
            bench.stop_enforcer(enf)
        bench.clean_engine()
    finally:
        note(f"{name}: {time.monotonic() - t0:.0f} s")


def main(argv: list[str] | None = None) -> int:
    from bench.common import interruptible

    o = parse_args(argv)
    if os.geteuid() != 0:
        say("needs root: a private dockerd")
        return 2
    if shutil.which("dockerd") is None:
        say("dockerd is not installed")
        return 2
    t0 = time.monotonic()
    with interruptible(), Bench(keep=o.keep) as bench:
        version = bench.docker.version()
        say(
            f"Edgeward enforcer vs Docker {version.get('Version', '?')} on a private engine; "
            f"{machine_line()}"
        )
        say(f"image {bench.image} (busybox, present locally); enforcer log level {o.log_level}\n")
        if o.heal:
            with section(bench, "heal"):
                heal_bench(bench, o)
        if o.converge:
            with section(bench, "converge"):
                converge_bench(bench, o)
        if o.resources:
            with section(bench, "resources"):
                resources_bench(bench, o)
        say(f"\n(total {time.monotonic() - t0:.0f} s; {machine_line()})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
