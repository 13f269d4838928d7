"""Which log lines are forwarded as errors, how long lines are cut, how a storm is limited."""

from __future__ import annotations

import pytest

from enforcer.logs.errors import (
    EVENT_LINE_BYTES,
    Rate,
    RateLimiter,
    cut,
    error_level,
    is_error,
    parse_rate,
)


@pytest.mark.parametrize(
    ("line", "level"),
    [
        (b"2026-11-30 02:00:01 ERROR db: connection refused", "error"),
        (b'level=error msg="disk full"', "error"),
        (b'time=1 level="fatal" msg=x', "fatal"),
        (b'{"time":"t","level":"error","msg":"boom"}', "error"),
        (b'{"severity": "CRITICAL", "msg": "x"}', "critical"),
        (b"error: cannot open /data", "error"),
        (b"[error] upstream timed out", "error"),
        (b"2026/11/30 02:00:01 [crit] 7#7: worker died", "critical"),
        (b"panic: runtime error: index out of range", "panic"),
        (b"FATAL: the database system is shutting down", "fatal"),
        (b"something CRITICAL happened", "critical"),
        (b"lvl=ERR component=x", "error"),
    ],
)
def test_lines_with_an_error_level_are_errors(line: bytes, level: str) -> None:
    assert error_level(line) == level
    assert is_error("stdout", error_level(line))


@pytest.mark.parametrize(
    "line",
    [
        b"GET /health 200",
        b'level=info msg="0 errors"',
        b'{"level":"info","msg":"no error here"}',
        b"retrying after an error in the last request",
        b"terrorist mirrors",
        b"Errors: 0",
        b"",
    ],
)
def test_ordinary_stdout_lines_are_not_errors(line: bytes) -> None:
    assert error_level(line) == ""
    assert not is_error("stdout", error_level(line))


def test_every_stderr_line_is_an_error() -> None:
    assert is_error("stderr", error_level(b"starting up"))


def test_a_level_far_into_a_long_line_is_not_looked_for() -> None:
    assert error_level(b"x" * 1000 + b" ERROR") == ""


def test_a_short_line_is_kept_as_it_is() -> None:
    assert cut(b"boom", 4) == "boom"
    assert cut("é".encode(), 2) == "é"


def test_a_long_line_is_cut_to_the_limit_and_says_how_long_it_was() -> None:
    line = b"a" * 1_000_000
    text = cut(line[:EVENT_LINE_BYTES], len(line))
    assert text.endswith("… [cut, 1000000 bytes]")
    assert len(text.encode("utf-8")) <= EVENT_LINE_BYTES
    assert text.startswith("a" * 8000)


def test_a_cut_never_splits_a_character() -> None:
    line = "€".encode() * 5000  # 15000 bytes
    text = cut(line[:EVENT_LINE_BYTES], len(line))
    assert len(text.encode("utf-8")) <= EVENT_LINE_BYTES
    assert set(text.split("…")[0]) == {"€"}


def test_invalid_utf8_is_replaced_not_refused() -> None:
    assert cut(b"bad \xff byte", 10) == "bad \ufffd byte"


def test_a_line_of_invalid_bytes_stays_within_the_limit() -> None:
    text = cut(b"\xff" * 4000, 4000)  # each becomes three bytes when replaced
    assert len(text.encode("utf-8")) <= EVENT_LINE_BYTES
    assert text.endswith("[cut, 4000 bytes]")


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10/min", Rate(10, 60.0, 20)),
        ("5/s", Rate(5, 1.0, 10)),
        (" 100 / hour ", Rate(100, 3600.0, 200)),
    ],
)
def test_rates_are_lines_per_period(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10", "is not a rate"),
        ("10/week", "is not a rate"),
        ("ten/min", '"ten" is not a whole number'),
        ("0/min", "at least 1 line"),
    ],
)
def test_a_bad_rate_is_refused_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rate(text)


def test_a_burst_passes_then_lines_are_refused_and_counted() -> None:
    limiter = RateLimiter(parse_rate("10/min"))
    admitted = [limiter.admit(100.0 + i * 0.001) for i in range(1000)]
    assert admitted.count(True) == 20
    assert admitted[:20] == [True] * 20
    assert limiter.suppressed == 980


def test_the_bucket_refills_at_the_rate() -> None:
    limiter = RateLimiter(parse_rate("10/min"))
    for _ in range(20):
        assert limiter.admit(0.0)
    assert not limiter.admit(0.0)
    assert not limiter.admit(5.0)  # 10/min: one token every 6 s
    assert limiter.admit(6.1)
    assert not limiter.admit(6.2)


def test_one_summary_per_window_of_what_was_refused() -> None:
    limiter = RateLimiter(parse_rate("10/min"))
    admitted = sum(limiter.admit(i * 0.01) for i in range(1020))  # 1020 lines in ~10 s
    assert admitted == 21  # the burst, and one token refilled after 6 s
    assert limiter.due(30.0) is None  # the window is not over yet
    summary = limiter.due(60.5)
    assert summary is not None
    assert summary.count == 999
    assert summary.first == pytest.approx(0.2)
    assert summary.last == pytest.approx(10.19)
    assert summary.message("web.web.0", 60.5) == (
        "999 more error lines from web.web.0 in the last 60 s (rate limit)"
    )
    assert limiter.due(61.0) is None  # told once


def test_a_final_summary_comes_at_once_when_the_stream_ends() -> None:
    limiter = RateLimiter(parse_rate("1/min"))
    for i in range(5):
        limiter.admit(float(i))
    summary = limiter.due(4.0, final=True)
    assert summary is not None and summary.count == 3


def test_a_limiter_with_nothing_to_tell_and_a_full_bucket_is_idle() -> None:
    limiter = RateLimiter(parse_rate("10/min"))
    assert limiter.idle(0.0)
    limiter.admit(0.0)
    assert not limiter.idle(1.0)
    assert limiter.idle(7.0)


def test_a_million_lines_a_minute_are_held_to_the_rate() -> None:
    limiter = RateLimiter(parse_rate("10/min"))
    passed = sum(limiter.admit(i * 60.0 / 1_000_000) for i in range(1_000_000))
    assert passed <= 20 + 10
    summary = limiter.due(60.1)
    assert summary is not None and summary.count == 1_000_000 - passed
