"""Errors forwarded from a site (issue 14): what it costs on the link and at the site.

1. month   Bytes a site sends (and receives) per month when one container writes one error
           line a minute. Real control, a real enrolled enforcer on a private dockerd, and a
           byte-counting TCP relay between them (the enforcer enrolls with the relay's address,
           so every byte of the mutual-TLS link is counted: handshakes, headers, bodies).
           Accelerated: the container writes one error a second (each still a batch of its
           own, as one a minute is); then a quiet window with no errors measures the rest
           (status pushes, long-polls). Month = per-error bytes x 43,200 + quiet bytes/s x 30
           days. The same errors' event bodies alone (JSON, and gzip-compressed) beside it.
2. storm   The enforcer's resident memory (psutil RSS, max over the window) and CPU (% of one
           core) while a container writes about 10,000 lines a second (1 % on stderr), with
           error forwarding on (default settings) and off, side by side.

    .venv/bin/python bench/bench_logs.py              # both, about 8 minutes
    .venv/bin/python bench/bench_logs.py --quick      # both, short windows, about 3 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import shutil
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Bench, interruptible, machine_line, say, table
from tests.support.apps import app, container, service
from tests.support.control import ControlProcess
from tests.support.processes import free_port

MONTH_ERRORS = 30 * 24 * 60  # one a minute
MONTH_SECONDS = 30 * 24 * 3600
RSS_GOAL_MB, CPU_GOAL_PCT, MONTH_GOAL_MB = 60.0, 5.0, 10.0
ERROR_TEXT = "ERROR payment gateway timed out after 30s (order {n}, retry 3 of 5)"


class Relay:
    """A TCP relay on loopback that counts the bytes each way (site -> control: up)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = 0
        self.down = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def counts(self) -> tuple[int, int]:
        return self.up, self.down

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_w, True), self._pipe(up_r, writer, False))

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, upward: bool
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                if upward:
                    self.up += len(data)
                else:
                    self.down += len(data)
                dst.write(data)
                await dst.drain()
        with contextlib.suppress(OSError, ConnectionError):
            dst.close()


def month_bench(bench: Bench, errors: int, quiet: float) -> None:
    say(f"\n== 1. Bytes per site per month, one error line a minute ({errors} errors "
        f"accelerated to one a second, then {quiet:g} s quiet) ==")  # fmt: skip
    (bench.root / "control").mkdir(exist_ok=True)
    ctl = ControlProcess(bench.root / "control")
    relay = Relay(ctl.port)
    relay.start()
    ctl.config.write_text(
        ctl.config.read_text() + f'public-url = "https://127.0.0.1:{relay.port}"\n'
    )
    ctl.start()

    def forwarded() -> list[dict[str, object]]:
        records = ctl.client().get("/v1/sites/bench-site/events?limit=1000")["events"]
        return [r.get("event", r) for r in records if r.get("event", r).get("kind") == "log-error"]

    try:
        bundle = ctl.bundle("bench-site")
        extra = f'[logs]\nerror-rate = "100/s"\n[control]\nenrollment = "{bundle}"\n'
        enf = bench.enforcer("month", extra_config=extra)
        loop = f"sleep 12; i=0; while [ $i -lt {errors} ]; do echo \"{ERROR_TEXT}\"; " \
               "i=$((i+1)); sleep 1; done; sleep 100000"  # fmt: skip
        enf.apply(app("shop", service("pay", container("main", bench.image, "sh", "-c", loop))))
        enf.wait_running("shop.pay.0", timeout=60)
        time.sleep(6)  # enrolled, first status and poll done, no error yet
        up0, down0 = relay.counts()
        t0 = time.monotonic()
        deadline = t0 + errors + 60
        while len(arrived := forwarded()) < errors and time.monotonic() < deadline:
            time.sleep(0.5)
        up1, down1 = relay.counts()
        t1 = time.monotonic()
        time.sleep(quiet)
        up2, down2 = relay.counts()
        t2 = time.monotonic()
        enf.cli("rm", "shop")
        bench.stop_enforcer(enf)
    finally:
        ctl.stop()
        relay.stop()
    # the errors' window holds its own share of quiet traffic: take it out
    quiet_up, quiet_down = (up2 - up1) / (t2 - t1), (down2 - down1) / (t2 - t1)
    per_error_up = max(0.0, (up1 - up0) - quiet_up * (t1 - t0)) / errors
    per_error_down = max(0.0, (down1 - down0) - quiet_down * (t1 - t0)) / errors
    body = [
        json.dumps({"seq": 1, "status": None, "events": [e]}, separators=(",", ":")).encode()
        for e in arrived
    ]  # as the site sends it (`enforcer.link.sync`): compact, gzip only above 1 KiB
    body_bytes = sum(map(len, body)) / max(1, len(body))
    gz_bytes = sum(len(gzip.compress(b)) for b in body) / max(1, len(body))

    def month(per_error: float, per_second: float) -> float:
        return (per_error * MONTH_ERRORS + per_second * MONTH_SECONDS) / 1e6

    rows = [
        ["on the wire, site -> control", f"{per_error_up:.0f}", f"{quiet_up:.2f}",
         f"{month(per_error_up, quiet_up):.1f} MB"],
        ["on the wire, control -> site", f"{per_error_down:.0f}", f"{quiet_down:.2f}",
         f"{month(per_error_down, quiet_down):.1f} MB"],
        ["on the wire, both ways", f"{per_error_up + per_error_down:.0f}",
         f"{quiet_up + quiet_down:.2f}",
         f"{month(per_error_up + per_error_down, quiet_up + quiet_down):.1f} MB"],
        ["batch body (compact JSON, as sent)", f"{body_bytes:.0f}", "-",
         f"{month(body_bytes, 0):.1f} MB"],
        ["batch body (if gzip-compressed)", f"{gz_bytes:.0f}", "-", f"{month(gz_bytes, 0):.1f} MB"],
    ]  # fmt: skip
    say(table(["", "bytes/error", "quiet bytes/s", "per month"], rows))
    say(f"  {len(arrived)} of {errors} error lines arrived at control as log-error events; "
        f"goal: under {MONTH_GOAL_MB:g} MB a month")  # fmt: skip


def storm_bench(bench: Bench, seconds: float) -> None:
    say(f"\n== 2. Enforcer RSS and CPU with a container writing ~10,000 lines/s "
        f"({seconds:g} s window) ==")  # fmt: skip
    # 100 bursts of 100 lines a second: 99 on stdout, one on stderr
    loop = ("n=0; while true; do seq 1 99 | sed \"s/.*/GET \\/api\\/items\\/& 200 1.2ms $n/\"; "
            "echo \"ERROR upstream reset $n\" >&2; n=$((n+1)); usleep 8000; done")  # fmt: skip
    rows = []
    for forward in (True, False):
        name = "storm-on" if forward else "storm-off"
        enf = bench.enforcer(
            name, extra_config=f"[logs]\nforward-errors = {str(forward).lower()}\n"
        )
        enf.apply(app(name, service("s", container("main", bench.image, "sh", "-c", loop))))
        enf.wait_running(f"{name}.s.0", timeout=60)
        ctr = bench.docker.containers.list(filters={"label": f"edgeward.app={name}"})[0]
        time.sleep(5)
        p = enf.process()
        c0, w0 = p.cpu_times(), time.monotonic()
        first = ctr.logs(tail=1, timestamps=False)
        rss_max = 0
        while time.monotonic() - w0 < seconds:
            rss_max = max(rss_max, p.memory_info().rss)
            time.sleep(0.5)
        c1, w1 = p.cpu_times(), time.monotonic()
        last = ctr.logs(tail=1, timestamps=False)
        rate = _lines_between(first, last) / (w1 - w0)
        cpu = 100 * ((c1.user + c1.system) - (c0.user + c0.system)) / (w1 - w0)
        events = [e["kind"] for e in _events(enf)]
        rows.append([
            "forward-errors = " + str(forward).lower(), f"{rate:,.0f}",
            f"{rss_max / 2**20:.1f}", f"{cpu:.1f}", str(events.count("log-error")),
            str(events.count("log-errors-suppressed")),
        ])  # fmt: skip
        enf.cli("rm", name)
        bench.stop_enforcer(enf)
    say(table(["", "lines/s", "RSS max MB", "CPU % core", "log-error", "suppressed"], rows))
    say(f"  goal: under {RSS_GOAL_MB:g} MB and under {CPU_GOAL_PCT:g} % of a core")


def _lines_between(first: bytes, last: bytes) -> float:
    """Lines written between two `tail=1` samples (every line ends with its burst's number)."""

    def burst(sample: bytes) -> int:
        return int(sample.split()[-1]) if sample.split() else 0

    return 100.0 * (burst(last) - burst(first))


def _events(enf: object) -> list[dict[str, object]]:
    from enforcer.cli.client import Client

    return list(Client(enf.socket, timeout=30).events())  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows")
    parser.add_argument("--month", action="store_true", help="only the bytes per month")
    parser.add_argument("--storm", action="store_true", help="only the 10,000 lines/s window")
    args = parser.parse_args()
    both = not (args.month or args.storm)
    say(f"bench_logs: {machine_line()}")
    if shutil.which("dockerd") is None:
        raise SystemExit("bench_logs: dockerd is not installed")
    with interruptible(), Bench() as bench:
        if both or args.month:
            month_bench(bench, errors=30 if args.quick else 120, quiet=40 if args.quick else 310)
        if both or args.storm:
            storm_bench(bench, seconds=15 if args.quick else 60)


if __name__ == "__main__":
    main()
