"""The enforcer benchmark's settings: goals, the services' commands, the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

COMPOSE = "/usr/bin/docker-compose"
RSS_GOAL_MB = 60.0
CPU_GOAL_PCT = 1.0
HEAL_GOAL = 1.2  # Edgeward's median heal time at most this times Docker's own
LIMIT_GOAL = 1.15  # Edgeward within this of the engine's limit (converge and heal)
API_SIDE = "Docker API (limit)"
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
