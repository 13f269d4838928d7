"""The forwarder's bookkeeping over a fake engine: who is followed, from where, what is sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from enforcer.facade import NotFound
from enforcer.logs.errors import parse_rate
from enforcer.logs.forwarder import ErrorForwarder
from enforcer.logs.marks import ReadMarks
from enforcer.logs.requests import answer_log_request
from enforcer.reconcile.runtime import ObservedContainer
from enforcer.runtime.logstream import LogLine, follow_after


def observed(cid: str, state: str = "running", instance: str = "web.web.0") -> ObservedContainer:
    labels = {"edgeward.instance": instance, "edgeward.container": "main",
              "edgeward.app": "web", "edgeward.tenant": "acme"}  # fmt: skip
    return ObservedContainer(cid, f"c-{cid}", labels, state)


class FakeEngine:
    def __init__(self) -> None:
        self.containers: list[ObservedContainer] = []
        self.lines: dict[str, list[LogLine]] = {}
        self.asked: list[tuple[str, str, int | None]] = []  # container, since, tail

    async def listed(self) -> list[ObservedContainer]:
        return list(self.containers)

    async def batches(
        self, container_id: str, *, follow: bool, keep: int, tail: int | None = None,
        since: str = "", stdout_words: tuple[bytes, ...] = (),
    ) -> AsyncIterator[list[LogLine]]:  # fmt: skip
        self.asked.append((container_id, since, tail))
        lines = self.lines.get(container_id, [])[-(tail or 0) :]
        after = [x for x in lines if not since or float(follow_after(x.stamp)) > float(since)]
        if stdout_words:
            after = [x for x in after
                     if x.stream == "stderr" or any(w in x.head.lower() for w in stdout_words)]  # fmt: skip
        for n in range(0, len(after), 3):  # in lists, as the engine's stream comes
            yield [LogLine(x.raw_stamp, x.stream, x.head[:keep], x.size) for x in after[n : n + 3]]

    def lines_of(self, container_id: str, *lines: tuple[str, bytes]) -> None:
        self.lines[container_id] = [
            LogLine(f"2026-11-30T00:00:{n:02d}.000000005Z".encode(), stream, text, len(text))
            for n, (stream, text) in enumerate(lines)
        ]


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def __call__(
        self, kind: str, message: str, *, app: str = "", instance: str = "", tenant: str = "",
        fields: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        self.events.append({"kind": kind, "message": message, "app": app, "instance": instance,
                            "tenant": tenant, "fields": dict(fields or {})})  # fmt: skip


def forwarder(
    engine: FakeEngine, emit: Recorder, rate: str = "10/min", scan: float = 0.01,
    marks: ReadMarks | None = None,
) -> ErrorForwarder:  # fmt: skip
    return ErrorForwarder(engine.listed, engine, emit, host="h1", rate=parse_rate(rate),
                          scan=scan, marks=marks)  # fmt: skip


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.02)


def test_error_lines_of_a_new_container_are_emitted_with_where_they_came_from() -> None:
    async def main() -> None:
        engine, emit = FakeEngine(), Recorder()
        fwd = forwarder(engine, emit)
        fwd.start()
        await settle()  # the first look: nothing yet
        engine.lines_of("c1", ("stdout", b"hello"), ("stderr", b"warn: x"),
                        ("stdout", b"level=error msg=boom"))  # fmt: skip
        engine.containers = [observed("c1")]
        await settle()
        await fwd.stop()
        assert [(e["kind"], e["message"]) for e in emit.events] == [
            ("log-error", "warn: x"),
            ("log-error", "level=error msg=boom"),
        ]
        first = emit.events[0]
        assert (first["app"], first["instance"], first["tenant"]) == ("web", "web.web.0", "acme")
        assert first["fields"] == {"container": "main", "host": "h1", "stream": "stderr",
                                   "level": ""}  # fmt: skip
        assert engine.asked[0] == ("c1", "", None)  # a new container: from its first line

    asyncio.run(main())


def test_containers_running_at_start_are_followed_from_then_and_again_after_a_stop() -> None:
    async def main() -> None:
        engine, emit = FakeEngine(), Recorder()
        engine.containers = [observed("c1")]
        engine.lines_of("c1", ("stderr", b"a"))
        fwd = forwarder(engine, emit)
        fwd.start()
        await settle()
        since = engine.asked[0][1]
        assert since and float(since) > 1795996800  # from the start on, not the old lines
        assert emit.events == []
        later = "2027-01-01T00:00:00.000000001Z"
        engine.lines["c1"].append(LogLine(later.encode(), "stderr", b"b", 1))
        await settle()  # its stream had ended (a fake's does): followed again from there
        assert [e["message"] for e in emit.events] == ["b"]
        engine.containers = [observed("c1", "exited")]
        await settle()
        asked = len(engine.asked)
        await settle()
        assert len(engine.asked) == asked  # stopped and read to its end: not asked again
        engine.containers = [observed("c1", "running")]
        await settle()
        assert engine.asked[asked][1] == follow_after(later) == "1798761600.000000002"
        assert [e["message"] for e in emit.events] == ["b"]  # nothing twice
        engine.containers = []
        await settle()
        assert fwd.followed == {}
        await fwd.stop()

    asyncio.run(main())


def test_a_storm_is_limited_and_summed_up_once_its_instance_is_gone() -> None:
    async def main() -> None:
        engine, emit = FakeEngine(), Recorder()
        fwd = forwarder(engine, emit, rate="2/hour")
        fwd.start()
        await settle()
        engine.lines_of("c1", *[("stderr", f"line {n}".encode()) for n in range(50)])
        engine.containers = [observed("c1", "exited")]
        await settle()
        engine.containers = []
        await settle()
        await fwd.stop()
        kinds = [e["kind"] for e in emit.events]
        assert kinds == ["log-error"] * 4 + ["log-errors-suppressed"]
        summary = emit.events[-1]
        assert summary["fields"]["count"] == 46
        assert summary["message"].startswith("46 more error lines from web.web.0 in the last")
        assert fwd.limiters == {}

    asyncio.run(main())


def test_a_log_request_is_answered_with_the_last_lines_or_what_is_wrong() -> None:
    async def main() -> None:
        engine = FakeEngine()
        engine.lines_of("c1", *[("stdout", f"line {n}".encode()) for n in range(10)])

        async def find(instance: str, container: str | None) -> str:
            if instance != "web.web.0":
                raise NotFound(f"instance {instance} does not exist")
            return "c1"

        ok = await answer_log_request(
            {"id": "r1", "kind": "logs", "instance": "web.web.0", "container": None, "tail": 3},
            find, engine, "store-7",
        )  # fmt: skip
        assert ok["error"] is None
        assert [line["line"] for line in ok["lines"]] == ["line 7", "line 8", "line 9"]
        assert ok["lines"][0]["stream"] == "stdout" and ok["lines"][0]["time"] == pytest.approx(
            1795996807.0
        )
        missing = await answer_log_request(
            {"id": "r2", "kind": "logs", "instance": "web.web.3", "tail": 3}, find, engine, "s"
        )
        assert missing == {"lines": [], "error": "instance web.web.3 does not exist at site s"}
        for bad, message in [
            ({"id": "r", "kind": "shell", "instance": "x"}, "unknown request kind 'shell'"),
            ({"id": "r", "kind": "logs"}, "names no instance"),
            ({"id": "r", "kind": "logs", "instance": "x", "tail": 0}, "from 1 to 10000"),
            ({"id": "r", "kind": "logs", "instance": "x", "container": 3}, "container:"),
        ]:
            answer = await answer_log_request(bad, find, engine, "s")
            assert answer["lines"] == [] and message in answer["error"]

    asyncio.run(main())


def test_a_log_request_for_an_instance_on_another_host_says_where_it_runs() -> None:
    async def main() -> None:
        engine = FakeEngine()

        async def find(instance: str, container: str | None) -> str:
            raise NotFound(f"instance {instance} does not exist")

        answer = await answer_log_request(
            {"id": "r", "kind": "logs", "instance": "web.web.1", "tail": 5}, find, engine,
            "store-7", lambda instance: "host-b" if instance == "web.web.1" else None,
        )  # fmt: skip
        assert answer["lines"] == []
        assert answer["error"].startswith("web.web.1 runs on host host-b of site store-7;")

    asyncio.run(main())


def test_a_started_container_is_followed_at_once_when_noticed_not_at_the_next_scan() -> None:
    async def main() -> None:
        engine, emit = FakeEngine(), Recorder()
        fwd = forwarder(engine, emit, scan=3600)
        fwd.start()
        await settle()  # the first look: nothing yet
        engine.containers = [observed("c1")]
        engine.lines_of("c1", ("stderr", b"boom"))
        await settle()
        assert emit.events == []  # no look yet: the next scan is an hour away
        fwd.notice()  # the reconciler saw it start
        await settle()
        assert [e["message"] for e in emit.events] == ["boom"]
        await fwd.stop()

    asyncio.run(main())


def test_a_storms_summary_is_told_when_its_window_ends_not_at_the_next_scan() -> None:
    async def main() -> None:
        engine, emit = FakeEngine(), Recorder()
        fwd = forwarder(engine, emit, rate="1/s", scan=3600)
        engine.containers = [observed("c1")]
        engine.lines["c1"] = [  # six errors within one second: two pass (the burst)
            LogLine(f"2026-11-30T00:00:00.{n}00000005Z".encode(), "stderr", b"e", 1)
            for n in range(6)
        ]
        fwd.start()
        fwd._started = 0.0  # follow from the first line
        for _ in range(60):
            await asyncio.sleep(0.05)
            if any(e["kind"] == "log-errors-suppressed" for e in emit.events):
                break
        kinds = [e["kind"] for e in emit.events]
        assert kinds.count("log-error") == 2 and kinds[-1] == "log-errors-suppressed", kinds
        await fwd.stop()

    asyncio.run(main())


def test_after_a_restart_a_container_is_read_on_from_its_mark_so_nothing_is_lost_or_sent_twice(
    tmp_path: Path,
) -> None:
    marks = ReadMarks(tmp_path / "logs" / "read-marks.json")

    async def run(engine: FakeEngine, emit: Recorder, from_first_line: bool = False) -> None:
        fwd = forwarder(engine, emit, rate="100/s", marks=marks)
        fwd.start()
        if from_first_line:  # a fresh host: containers are read from their first line
            fwd._started = 0.0
        await settle()
        await fwd.stop()

    engine = FakeEngine()
    engine.containers = [observed("c1")]
    engine.lines_of("c1", ("stderr", b"before"))
    first = Recorder()
    asyncio.run(run(engine, first, from_first_line=True))
    assert [e["message"] for e in first.events] == ["before"]
    assert marks.load() == {"c1": engine.lines["c1"][-1].stamp}
    # the enforcer is down; the container writes on
    engine.lines_of("c1", ("stderr", b"before"), ("stderr", b"while down"), ("stdout", b"ok"))
    second = Recorder()
    asyncio.run(run(engine, second))
    assert [e["message"] for e in second.events] == ["while down"]
    assert marks.load() == {"c1": engine.lines["c1"][1].stamp}  # its last line read


def test_an_unreadable_marks_file_means_from_now_on_and_a_full_disk_keeps_the_last_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "read-marks.json"
    path.write_text("{not json")
    assert ReadMarks(path).load() == {}
    blocked = ReadMarks(tmp_path / "file" / "read-marks.json")
    (tmp_path / "file").write_text("a file where the directory should be")
    blocked.save({"c1": "2026-11-30T00:00:00.000000001Z"})  # logged, not raised
    assert blocked.load() == {}
