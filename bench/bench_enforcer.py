"""The enforcer against Docker's own tools, side by side on one private engine (issue 2).

1. heal      Heal time after a crash: containers run with Docker's own `--restart always`
             against Edgeward-managed containers. A crash is SIGKILL of the container's main
             process from the host (what a real crash looks like to the engine); measured from
             the kill to the engine's `start` event of that container, taken from the engine's
             event stream (timeNano). Each container is crashed once after a stable run (first
             crash), then one container of each side is crashed repeatedly (crash loop, both
             sides back off), and one of each is stopped with `docker kill` through the API.
             The limit beside them: a container without restart policy that the bench itself
             starts through the Docker API the moment its `die` event arrives.
2. converge  An application of 20 busybox services (`sleep` or `httpd`) from a locally present
             image: `docker-compose up -d` (Debian's v1) of the equivalent compose file against
             `edge-enforcer apply -f`, from the command to the 20th container's `start` event.
             Torn down between runs (`docker-compose down`, `edge-enforcer rm`). The limit
             beside them: the same containers created and started straight through the Docker
             API (docker SDK), as many calls at a time as the enforcer's docker-parallelism, on
             a bridge network of their own. Edgeward's goal: within 1.15x of the limit.
3. resources The enforcer daemon's resident memory (psutil RSS) and idle CPU (% of one core from
             cpu_times deltas, children included) with 0, 20 and 50 managed containers.

Everything runs on a private dockerd and registry from `tests.support`, and the enforcer is a
real subprocess (`python -m enforcer --config CFG run`); all of it is stopped and removed on
exit, errors, Ctrl-C and SIGTERM.

    .venv/bin/python bench/bench_enforcer.py                 # all, about 4-6 minutes
    .venv/bin/python bench/bench_enforcer.py --quick         # all, small, about 2 minutes
    .venv/bin/python bench/bench_enforcer.py --heal --kills 5
    .venv/bin/python bench/bench_enforcer.py --resources --levels 0,20 --idle-seconds 10
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Bench, interruptible, machine_line, note, say
from bench.enforcer_converge import converge_bench
from bench.enforcer_heal import heal_bench
from bench.enforcer_options import parse_args
from bench.enforcer_resources import resources_bench


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
