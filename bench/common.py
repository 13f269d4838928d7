"""Shared pieces of the enforcer benchmarks: the real parts, an enforcer subprocess, the engine's
event stream, statistics and tables.

Every process here is started by us and stopped by the pid we started; the Docker engine is a
private one from `tests.support.engines` (own socket, data root and address pool), never the
machine's. `Bench` owns all of it and tears it down in reverse order on exit, on errors, on
Ctrl-C and on SIGTERM/SIGHUP.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # `python bench/bench_enforcer.py`: the repository's packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker

from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine
from tests.support.images import import_image, push
from tests.support.registry import Registry

API_VERSION = "1.41"


# --- statistics and printing ---------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def valid(values: Sequence[float]) -> list[float]:
    """The values that are numbers (a nan is a measurement not made)."""
    return [x for x in values if not math.isnan(x)]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def secs(value: float) -> str:
    """Seconds for a table cell: ms below 10 s."""
    if math.isnan(value):
        return "-"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def ratio(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base) or base <= 0:
        return "-"
    return f"{value / base:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """A plain text table; the first column left-aligned, the others right-aligned."""
    cells = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append(indent + "  ".join(parts).rstrip())
        if n == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def say(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    """Progress on stderr, so that stdout holds the figures only."""
    print(f"  .. {text}", file=sys.stderr, flush=True)


# --- signals ---------------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that every `finally` runs."""


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM/SIGHUP raise `Terminated` in the main thread while inside."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Cleanup that a second Ctrl-C must not cut short."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in sigs}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


# --- the engine's event stream -------------------------------------------------------------


@dataclass(frozen=True)
class EngineEvent:
    action: str
    container: str
    time_ns: int  # the engine's timeNano (same host clock as time.time_ns())
    attributes: Mapping[str, str]


class EngineEvents:
    """Container start/die/kill events of one engine, recorded on a thread as they come."""

    def __init__(self, url: str) -> None:
        self._api = docker.APIClient(base_url=url, version=API_VERSION, timeout=60)
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self.events: list[EngineEvent] = []
        self.error: BaseException | None = None

    def start(self) -> None:
        self._stream = self._api.events(
            decode=True, filters={"type": ["container"], "event": ["start", "die", "kill"]}
        )
        self._thread = threading.Thread(target=self._pump, name="engine-events", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for raw in self._stream:
                actor = raw.get("Actor") or {}
                ev = EngineEvent(
                    action=str(raw.get("Action") or raw.get("status") or ""),
                    container=str(actor.get("ID") or raw.get("id") or ""),
                    time_ns=int(raw.get("timeNano") or 0),
                    attributes=dict(actor.get("Attributes") or {}),
                )
                with self._cond:
                    self.events.append(ev)
                    self._cond.notify_all()
        except Exception as exc:
            self.error = exc
        with self._cond:
            self._cond.notify_all()

    def wait(
        self, match: Callable[[EngineEvent], bool], timeout: float, after_ns: int = 0
    ) -> EngineEvent | None:
        """The first recorded event at or after `after_ns` that matches; None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if ev.time_ns >= after_ns and match(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or (self._thread is not None and not self._thread.is_alive()):
                    return None
                self._cond.wait(min(left, 0.5))

    def since(self, after_ns: int, match: Callable[[EngineEvent], bool]) -> list[EngineEvent]:
        with self._cond:
            return [ev for ev in self.events if ev.time_ns >= after_ns and match(ev)]

    def wait_count(
        self, after_ns: int, match: Callable[[EngineEvent], bool], count: int, timeout: float
    ) -> list[EngineEvent]:
        """First events of `count` distinct containers that match, or fewer on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                firsts: dict[str, EngineEvent] = {}
                for ev in self.events:
                    if ev.time_ns >= after_ns and match(ev) and ev.container not in firsts:
                        firsts[ev.container] = ev
                left = deadline - time.monotonic()
                if len(firsts) >= count or left <= 0:
                    return sorted(firsts.values(), key=lambda e: e.time_ns)
                self._cond.wait(min(left, 0.5))

    def trim(self) -> None:
        with self._cond:
            self.events.clear()

    def stop(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
        if self._thread is not None:
            self._thread.join(5)
        self._api.close()


def labelled(key: str, value: str, action: str) -> Callable[[EngineEvent], bool]:
    return lambda ev: ev.action == action and ev.attributes.get(key) == value


class UeventCounter:
    """Counts the kernel's device events (uevents) while open: the enforcer follows them all
    (`enforcer.devices.watcher.DeviceWatcher`), so other containers starting on this host cost
    it CPU."""

    def __init__(self) -> None:
        self.count: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> UeventCounter:
        try:
            import pyudev

            monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
            monitor.start()
        except Exception:  # no netlink here: the column says "-"
            return self
        self.count = 0

        def pump() -> None:
            while not self._stop.is_set():
                if monitor.poll(timeout=0.2) is not None and self.count is not None:
                    self.count += 1

        self._thread = threading.Thread(target=pump, name="uevents", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)


# --- an enforcer as a real subprocess ------------------------------------------------------


def timed_cli(enf: EnforcerProc, *args: str, timeout: float = 180) -> float:
    """Run `edge-enforcer --config CFG ARGS...`; the seconds it took. Raises when it fails."""
    t0 = time.perf_counter()
    result = enf.cli(*args, timeout=timeout)
    took = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"edge-enforcer {' '.join(args)}: {result.stderr.strip()}")
    return took


# --- the bench: engine, registry, image, enforcers, all torn down on exit ------------------


@dataclass
class Bench:
    """A private Docker engine and registry with the busybox test image, present locally."""

    keep: bool = False
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ewb-", dir="/tmp")))
    engine: DockerEngine | None = None
    registry: Registry | None = None
    client: docker.DockerClient | None = None
    events: EngineEvents | None = None
    image: str = ""
    enforcers: list[EnforcerProc] = field(default_factory=list)

    @property
    def docker(self) -> docker.DockerClient:
        assert self.client is not None
        return self.client

    @property
    def url(self) -> str:
        assert self.engine is not None
        return self.engine.url

    def start(self) -> None:
        self.registry = Registry(self.root / "r")
        self.registry.start()
        self.engine = DockerEngine(self.root / "d")
        self.engine.start()
        self.client = docker.DockerClient(
            base_url=self.engine.url, version=API_VERSION, timeout=120
        )
        self.image = import_image(self.client, f"{self.registry.address}/bench/busybox", "1")
        push(self.client, self.image)  # a normal registry reference, already present locally
        self.events = EngineEvents(self.engine.url)
        self.events.start()

    def enforcer(self, name: str, log_level: str = "INFO", extra_config: str = "") -> EnforcerProc:
        """`edge-enforcer run` on the bench's engine with the enforcer's default settings."""
        enf = EnforcerProc(
            self.root / name,
            self.url,
            host_id=f"bench-{name}",
            tuning="",
            log_level=log_level,
            extra_config=extra_config,
        )
        self.enforcers.append(enf)
        enf.start(timeout=60, healthy=True)
        return enf

    def stop_enforcer(self, enf: EnforcerProc) -> None:
        """Stop it and remove its firewall chains (the daemon leaves them hooked by design)."""
        enf.stop()
        with contextlib.suppress(Exception):
            enf.remove_firewall()
        with contextlib.suppress(ValueError):
            self.enforcers.remove(enf)

    def clean_engine(self) -> None:
        """Remove every container and user network of the private engine."""
        client = self.docker
        for c in client.containers.list(all=True):
            with contextlib.suppress(Exception):
                c.remove(force=True)
        for net in client.networks.list():
            if net.name not in ("bridge", "host", "none"):
                with contextlib.suppress(Exception):
                    net.remove()

    def stop(self) -> None:
        with uninterrupted():
            for enf in reversed(self.enforcers):
                with contextlib.suppress(Exception):
                    self.stop_enforcer(enf)
            self.enforcers.clear()
            if self.events is not None:
                with contextlib.suppress(Exception):
                    self.events.stop()
            if self.client is not None:
                with contextlib.suppress(Exception):
                    self.client.close()
            if self.engine is not None:
                with contextlib.suppress(Exception):
                    self.engine.stop()  # removes its containers, then stops dockerd by pid
            if self.registry is not None:
                with contextlib.suppress(Exception):
                    self.registry.stop()
            if self.keep:
                note(f"kept {self.root}")
            else:
                for _ in range(5):  # netns mounts may linger a moment after dockerd exits
                    shutil.rmtree(self.root, ignore_errors=True)
                    if not self.root.exists():
                        break
                    time.sleep(1)

    def __enter__(self) -> Bench:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def machine_line() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}"
