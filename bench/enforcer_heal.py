"""Heal time after a crash: Docker's `--restart always`, Edgeward, and the engine's limit."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker

from bench.common import (
    API_VERSION,
    Bench,
    EngineEvent,
    labelled,
    median,
    note,
    percentile,
    ratio,
    say,
    secs,
    table,
    timed_cli,
    valid,
)
from bench.enforcer_converge import app_spec, wait_running
from bench.enforcer_options import API_SIDE, HEAL_GOAL, LIMIT_GOAL, SLEEP_CMD, STABLE, Options
from enforcer.config.model import EnforcerConfig
from tests.support.processes import wait_for


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
    results: dict[str, list[Heal]] = field(
        default_factory=lambda: {"docker": [], "edgeward": [], "api": []}
    )

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
                wait_for(lambda: self.running(t), 40, t.value)
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
    docker_targets, ew_targets, api_targets = [], [], []
    for i in range(n):
        for side, policy in (("dk", "always"), ("api", "no")):
            restart: Any = {"Name": policy}
            bench.docker.containers.run(
                bench.image,
                SLEEP_CMD,
                name=f"{side}-heal-{i}",
                detach=True,
                network=net.name,
                restart_policy=restart,
                labels={"bench.target": f"{side}-heal-{i}", "bench.side": side},
            )
        docker_targets.append(Target("docker", "bench.target", f"dk-heal-{i}"))
        api_targets.append(Target("api", "bench.target", f"api-heal-{i}"))
        ew_targets.append(Target("edgeward", "edgeward.instance", f"heal.svc.{i}"))
    spec = enf.root / "heal.yaml"
    spec.write_text(app_spec("heal", [("svc", SLEEP_CMD)], replicas=n, image=bench.image))
    timed_cli(enf, "apply", "-f", str(spec))
    wait_running(bench, "edgeward.app=heal", n, 120)
    time.sleep(2)  # everything settled: probes, firewall, events stored

    start = time.monotonic()
    with DieRestarter(bench.url, "bench.side=api"):
        first_crashes(bench, o, start, [docker_targets, ew_targets, api_targets])

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
        if any(len(loop.results[side]) < o.loop_kills for side in ("docker", "edgeward")):
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


def first_crashes(bench: Bench, o: Options, start: float, sides: list[list[Target]]) -> None:
    """Each side's i-th container killed once after a stable run, the sides' order rotating."""
    run = HealRun(bench, deadline=start + o.heal_budget * 0.6)
    done = 0
    for i in range(o.kills):
        if run.left() <= 0:
            break
        for k in range(len(sides)):
            t = sides[(i + k) % len(sides)][i]
            h = run.crash(t)
            run.results[t.side].append(h)
            note(f"first crash {i + 1}/{o.kills} {t.side}: {secs(h.total)}")
        done += 1
    named = {"docker": "Docker --restart always", "edgeward": "Edgeward", "api": API_SIDE}
    rows = [
        [
            named[side],
            str(len(hs)),
            str(sum(1 for h in hs if h.start_ns is None)),
            secs(median(valid([h.total for h in hs]))),
            secs(percentile(valid([h.total for h in hs]), 90)),
            secs(max(valid([h.total for h in hs]), default=math.nan)),
            secs(median(valid([h.reaction for h in hs]))),
        ]
        for side, hs in run.results.items()
    ]
    stopped = "" if done == o.kills else " (stopped: --heal-budget spent)"
    say(
        f"\n  first crash after a stable run, {done} of {o.kills} kills per side "
        f"(rotating){stopped}:"
    )
    say(table(["", "kills", "not healed", "median", "p90", "max", "die->start med"], rows))
    e = run.results["edgeward"]
    m_e = math.inf if any(h.start_ns is None for h in e) else median(valid([h.total for h in e]))
    for side, goal in (("docker", HEAL_GOAL), ("api", LIMIT_GOAL)):
        m = median(valid([h.total for h in run.results[side]]))
        verdict = "met" if m_e <= goal * m else "MISSED"
        say(
            f"  Edgeward / {named[side]} (median): "
            f"{ratio(m_e, m) if m_e != math.inf else 'inf'}   goal <= {goal:.2f}x: {verdict}"
        )
    unstable = [side for side, hs in run.results.items() if any(not h.stable for h in hs)]
    if unstable:
        say(f"  note: died again within {STABLE:g} s of a heal: {', '.join(unstable)}")


class DieRestarter:
    """The engine's limit for healing: a container labelled `label` is started straight
    through the Docker API the moment its `die` event arrives (no policy, no backoff)."""

    def __init__(self, url: str, label: str) -> None:
        self._api = docker.APIClient(base_url=url, version=API_VERSION, timeout=60)
        self._label = label
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DieRestarter:
        self._stream = self._api.events(
            decode=True, filters={"type": ["container"], "event": ["die"], "label": [self._label]}
        )
        self._thread = threading.Thread(target=self._pump, name="die-restarter", daemon=True)
        self._thread.start()
        return self

    def _pump(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when we close it
            for event in self._stream:
                with contextlib.suppress(docker.errors.APIError):
                    self._api.start(event["id"])

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()
        if self._thread is not None:
            self._thread.join(5)
        self._api.close()


def loop_cell(h: Heal | None) -> str:
    if h is None:
        return "-"
    return "not healed" if h.start_ns is None else secs(h.total)


def describe_heal(h: Heal, waited: float) -> str:
    return f"not within {waited:g} s" if h.start_ns is None else secs(h.total)
