"""Error lines of a site's containers, picked out at the site and forwarded to control; a
site's logs fetched through the sync channel. Real enforcers on a real dockerd, real control."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from enforcer.cli.client import Client
from tests.support.apps import app, container, service
from tests.support.control import ControlProcess, api_error
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine

T = TypeVar("T")

BIG_LINE = 1_000_000  # bytes of x after "ERROR big "
STORM = 3000  # stderr lines written at once


def until(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def enforcer_with(engine: DockerEngine, logs: str, extra: str = "") -> EnforcerProc:
    root = Path(tempfile.mkdtemp(prefix="errfwd-", dir="/tmp"))
    return EnforcerProc(root, engine.url, extra_config=f"[logs]\n{logs}\n{extra}", log_level="INFO")


def dispose(enf: EnforcerProc) -> None:
    if enf.proc is not None:
        for name in enf.app_names():
            enf.cli("rm", name)
    enf.stop()
    enf.remove_firewall()
    shutil.rmtree(enf.root, ignore_errors=True)


def site_events(enf: EnforcerProc, kind: str) -> list[dict[str, Any]]:
    return [e for e in Client(enf.socket, timeout=10).events() if e["kind"] == kind]


@pytest.fixture()
def local_site(engine: DockerEngine) -> Iterator[EnforcerProc]:
    enf = enforcer_with(engine, 'error-rate = "20/s"')  # a window of 1 s: the test is short
    enf.start()
    yield enf
    dispose(enf)


def test_error_lines_become_site_events_and_a_storm_is_summed_up(
    local_site: EnforcerProc, test_image: str
) -> None:
    script = (
        "echo starting; echo 'level=error msg=\"db down\"'; echo 'oops on stderr' >&2; "
        f"{{ printf 'ERROR big '; head -c {BIG_LINE} /dev/zero | tr '\\0' x; echo; }}; "
        # stdout and stderr reach the log on two paths: the storm waits for the big line
        f'sleep 2; i=0; while [ $i -lt {STORM} ]; do echo "storm $i" >&2; i=$((i+1)); done; '
        "sleep 100000"
    )
    local_site.apply(app("noisy", service("w", container("main", test_image, "sh", "-c", script))))
    local_site.wait_running("noisy.w.0")

    def storm_told() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        errors = site_events(local_site, "log-error")
        summaries = site_events(local_site, "log-errors-suppressed")
        storm = [e for e in errors if e["message"].startswith("storm ")]
        told = len(storm) + sum(s["fields"]["count"] for s in summaries)
        print("told", told, "of", STORM)  # shown when it times out
        return (errors, summaries) if told == STORM else None

    errors, summaries = until(storm_told, 20, "every storm line forwarded or counted")
    by_message = {e["message"]: e for e in errors}
    assert "starting" not in by_message  # an ordinary stdout line stays at the site
    db = by_message['level=error msg="db down"']
    assert (db["instance"], db["app"]) == ("noisy.w.0", "noisy")
    assert db["fields"]["stream"] == "stdout" and db["fields"]["level"] == "error"
    assert db["fields"]["container"] == "main" and db["fields"]["host"] == local_site.host_id
    assert by_message["oops on stderr"]["fields"]["stream"] == "stderr"
    big = next(e for e in errors if e["message"].startswith("ERROR big x"))
    assert big["message"].endswith(f"… [cut, {BIG_LINE + 10} bytes]")
    assert len(big["message"].encode()) <= 8192
    storm = [e for e in errors if e["message"].startswith("storm ")]
    assert len(storm) < 100  # the burst and the rate, not 3000 events
    assert summaries and all(s["instance"] == "noisy.w.0" for s in summaries)
    assert summaries[0]["message"].startswith(f"{summaries[0]['fields']['count']} more error")
    assert local_site.process().memory_info().rss < 120 * 2**20


def test_errors_written_while_the_enforcer_was_down_are_forwarded_after_it_starts_once_each(
    local_site: EnforcerProc, test_image: str
) -> None:
    script = 'i=0; while true; do echo "ERROR tick $i" >&2; i=$((i+1)); sleep 0.3; done'
    local_site.apply(app("ticker", service("t", container("main", test_image, "sh", "-c", script))))
    local_site.wait_running("ticker.t.0")

    def ticks() -> list[int]:
        return [int(e["message"].split()[-1]) for e in site_events(local_site, "log-error")
                if e["instance"] == "ticker.t.0"]  # fmt: skip

    until(lambda: len(ticks()) >= 3, 15, "the first ticks forwarded")
    local_site.stop()  # the container ticks on, about 10 times while the enforcer is down
    time.sleep(3)
    local_site.start()
    def past_twenty() -> list[int] | None:
        found = ticks()
        return found if found and max(found) >= 20 else None

    seen = until(past_twenty, 20, "ticks after the restart")
    assert sorted(seen) == list(range(max(seen) + 1)), f"lost or doubled: {sorted(seen)}"


def test_log_lines_come_apart_by_stream_and_a_long_line_comes_whole_but_kept_short(
    docker_client: Any, engine: DockerEngine, test_image: str
) -> None:
    import asyncio

    from enforcer.runtime.logstream import DockerLogs

    script = (
        "echo hi; echo oops >&2; "
        f"{{ printf 'ERROR big '; head -c {BIG_LINE} /dev/zero | tr '\\0' x; echo; }}; echo bye"
    )
    ctr = docker_client.containers.run(
        test_image, ["sh", "-c", script], detach=True, log_config={"Type": "local"}
    )
    try:
        ctr.wait(timeout=30)

        async def read() -> list[Any]:
            logs = DockerLogs(engine.url)
            try:
                return [line async for line in logs.lines(ctr.id, follow=False, keep=100)]
            finally:
                await logs.close()

        lines = asyncio.run(read())

    finally:
        ctr.remove(force=True)
    stdout = [(line.head[:12], line.size) for line in lines if line.stream == "stdout"]
    assert stdout == [(b"hi", 2), (b"ERROR big xx", BIG_LINE + 10), (b"bye", 3)]
    assert [line.head for line in lines if line.stream == "stderr"] == [b"oops"]
    assert max(len(line.head) for line in lines) == 100
    assert all(line.time > time.time() - 60 for line in lines)


SITE = "store-7"
TICKER = 'i=0; while true; do echo "ERROR tick $i"; echo "fine $i"; i=$((i+1)); sleep 0.2; done'


@pytest.fixture(scope="module")
def linked(engine: DockerEngine, test_image: str) -> Iterator[tuple[ControlProcess, EnforcerProc]]:
    """Control, and an enrolled enforcer running a container that writes an error line five
    times a second (under its rate: nothing is summed up)."""
    root = Path(tempfile.mkdtemp(prefix="errctl-", dir="/tmp"))
    control = ControlProcess(root)
    control.start()
    bundle = control.bundle(SITE, {"region": "eu"})
    enf = enforcer_with(engine, 'error-rate = "100/s"', f'[control]\nenrollment = "{bundle}"\n')
    try:
        enf.start()
        enf.apply(app("ticker", service("t", container("main", test_image, "sh", "-c", TICKER))))
        enf.wait_running("ticker.t.0")
        yield control, enf
    finally:
        dispose(enf)
        control.stop()
        shutil.rmtree(root, ignore_errors=True)


def ticks_at_control(control: ControlProcess) -> list[int]:
    events = control.client().get(f"/v1/events?site={SITE}&limit=1000")["events"]
    return sorted(
        int(e["message"].split()[-1])
        for e in events
        if e.get("kind") == "log-error" and e.get("message", "").startswith("ERROR tick ")
    )


def test_error_lines_reach_control_within_seconds_and_an_outage_loses_none(
    linked: tuple[ControlProcess, EnforcerProc],
) -> None:
    control, enf = linked
    started = time.monotonic()
    before = until(lambda: ticks_at_control(control), 10, "the first error line at control")
    assert time.monotonic() - started < 10
    control.stop()  # control away: the site keeps the lines in its outbox
    time.sleep(3)  # 15 more error lines
    control.start()
    restarted = time.monotonic()

    def caught_up() -> list[int] | None:
        ticks = ticks_at_control(control)
        return ticks if ticks[-1] >= before[-1] + 20 else None

    ticks = until(caught_up, 20, "the error lines written while control was away")
    assert ticks == list(range(ticks[0], ticks[-1] + 1))  # none lost, none twice
    assert time.monotonic() - restarted < 20
    fine = [m for m in enf.log_tail().splitlines() if "log-error: fine" in m]
    assert fine == []  # ordinary lines stay at the site
    shown = control.cli("events", "--site", SITE, "-n", "5", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    last = [json.loads(line) for line in shown.stdout.splitlines()][-1]
    assert (last["site"], last["kind"], last["instance"]) == (SITE, "log-error", "ticker.t.0")
    assert last["fields"]["stream"] == "stdout" and last["fields"]["level"] == "error"


def test_a_running_containers_lines_are_fetched_through_the_sync_channel(
    linked: tuple[ControlProcess, EnforcerProc],
) -> None:
    control, _ = linked

    def reported() -> bool:  # control asks only for instances the site's status lists
        status = control.client().get(f"/v1/sites/{SITE}").get("status") or {}
        return any(i.get("id") == "ticker.t.0" for i in status.get("instances", []))

    until(reported, 10, "the site's status listing ticker.t.0")
    started = time.monotonic()
    answer = control.client().get(f"/v1/sites/{SITE}/logs?instance=ticker.t.0&tail=6")
    assert time.monotonic() - started < 5  # answered in the long-poll, not after it
    lines = answer["lines"]
    assert len(lines) == 6
    assert {line["stream"] for line in lines} == {"stdout"}
    texts = [line["line"] for line in lines]
    assert any(t.startswith("fine ") for t in texts)  # every line, not only errors
    assert any(t.startswith("ERROR tick ") for t in texts)
    assert all(t.split()[-1].isdigit() for t in texts)
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)
    error = api_error(
        lambda: control.client().get(f"/v1/sites/{SITE}/logs?instance=ticker.t.9&tail=5")
    )
    assert "'ticker.t.9' does not exist" in str(error)
    error = api_error(  # asked of the site, which answers with what is wrong
        lambda: control.client().get(f"/v1/sites/{SITE}/logs?instance=ticker.t.0&container=db")
    )
    assert "instance ticker.t.0 has no container db" in str(error)
    shown = control.cli("logs", SITE, "ticker.t.0", "--tail", "4")
    assert shown.returncode == 0, shown.stderr
    assert len(shown.stdout.splitlines()) == 4
    assert any(line.startswith("ERROR tick ") for line in shown.stdout.splitlines())
