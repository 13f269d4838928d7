"""Which log lines are errors, how long lines are cut, and how a storm of them is limited.

Pure: plain functions and small classes over bytes and timestamps, no I/O. A line is an error
when it came on stderr or when it carries an error level (``ERROR``, ``level=error``,
``"level":"error"``, ``FATAL``, ``CRITICAL``, ``panic: ...``). Forwarded lines are cut to
`EVENT_LINE_BYTES` of UTF-8 ending with ``… [cut, N bytes]``. `RateLimiter` is a token bucket
per instance (by default 10 lines a minute, bursts of 20); what it refuses is counted and
summed up once per window by `RateLimiter.due`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "EVENT_LINE_BYTES",
    "LEVEL_WORDS",
    "REPLY_LINE_BYTES",
    "Rate",
    "RateLimiter",
    "Suppressed",
    "cut",
    "error_level",
    "is_error",
    "parse_rate",
]

EVENT_LINE_BYTES = 8192  # a forwarded error line, at most (its cut mark included)
REPLY_LINE_BYTES = 65536  # a line of a log reply, at most
HEAD_BYTES = 512  # the part of a line where a level is looked for

_LEVELS = {
    "error": "error", "err": "error", "eror": "error",
    "fatal": "fatal", "crit": "critical", "critical": "critical",
    "emerg": "critical", "alert": "critical", "panic": "panic",
}  # fmt: skip
_WORDS = rb"error|err|eror|fatal|crit|critical|emerg|alert|panic"
_LEVEL_PATTERN = re.compile(
    # level=error, lvl=ERR, severity="error", "level":"error", 'level': 'fatal'
    rb"""(?i:\b(?:level|lvl|severity|loglevel)["']?\s*[=:]\s*["']?(""" + _WORDS + rb"""))\b"""
    # ERROR, FATAL, CRITICAL, PANIC written in capitals anywhere in the head
    rb"|\b(ERROR|ERR|FATAL|CRITICAL|CRIT|PANIC|EMERG|ALERT)\b"
    # a line that starts with the level, after an optional timestamp: "error: ...", "[error]"
    rb"|^[\d\s:.,TZ+/\-]*[\[<(]?(?i:(" + _WORDS + rb"))(?:[\]>):]|\s+-)"
)


LEVEL_WORDS = (b"err", b"eror", b"fatal", b"crit", b"emerg", b"alert", b"panic")  # in each level
LEVEL_HINT = re.compile(b"(?i)" + b"|".join(LEVEL_WORDS))


def error_level(line: bytes) -> str:
    """The error level a log line carries: "error", "fatal", "critical", "panic" or ""."""
    if LEVEL_HINT.search(line, 0, HEAD_BYTES) is None:  # most lines: one quick look
        return ""
    found = _LEVEL_PATTERN.search(line, 0, HEAD_BYTES)
    if found is None:
        return ""
    word = next(g for g in found.groups() if g is not None)
    return _LEVELS.get(word.decode("ascii").lower(), "error")


def is_error(stream: str, level: str) -> bool:
    """Whether a line of `stream` with `level` (`error_level`) is forwarded."""
    return stream == "stderr" or bool(level)


def cut(head: bytes, size: int, limit: int = EVENT_LINE_BYTES) -> str:
    """The line (its first bytes `head` of `size` in all, without its newline), as text of at
    most `limit` bytes of UTF-8; a longer one ends with "… [cut, N bytes]" (N: the line's size)."""
    if size <= limit and len(head) >= size:
        text = head.decode("utf-8", errors="replace")
        if len(text.encode("utf-8")) <= limit:  # a replaced byte takes three
            return text
    mark = f"… [cut, {size} bytes]"
    room = limit - len(mark.encode("utf-8"))
    kept = head[:room].decode("utf-8", errors="ignore")  # a cut character goes entirely
    while len(kept.encode("utf-8")) > room:  # invalid bytes decode to nothing here, but be sure
        kept = kept[:-1]
    return kept + mark


@dataclass(frozen=True)
class Rate:
    """Lines per `period` seconds, with bursts of `burst` lines."""

    lines: int
    period: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.lines / self.period


_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
            "h": 3600.0, "hour": 3600.0}  # fmt: skip


def parse_rate(text: str) -> Rate:
    """ "10/min" → 10 lines a minute, bursts of 20. ValueError names what is wrong."""
    count, slash, unit = text.strip().partition("/")
    if not slash or unit.strip() not in _PERIODS:
        raise ValueError(f'"{text}" is not a rate: write lines per period, e.g. "10/min"')
    try:
        lines = int(count)
    except ValueError:
        raise ValueError(f'"{text}": "{count.strip()}" is not a whole number of lines') from None
    if lines < 1:
        raise ValueError(f'"{text}": at least 1 line per period')
    return Rate(lines, _PERIODS[unit.strip()], 2 * lines)


@dataclass(frozen=True)
class Suppressed:
    """Error lines the limiter refused: how many, the first's and the last's times."""

    count: int
    first: float
    last: float

    def message(self, instance: str, now: float) -> str:
        seconds = max(1, round(now - self.first))
        return f"{self.count} more error lines from {instance} in the last {seconds} s (rate limit)"


class RateLimiter:
    """A token bucket over the times (seconds) it is given; one per instance."""

    def __init__(self, rate: Rate, window: float | None = None) -> None:
        self.rate = rate
        self.window = rate.period if window is None else window  # summaries at most this often
        self._tokens = float(rate.burst)
        self._at: float | None = None
        self._count = 0
        self._first = 0.0
        self._last = 0.0

    def admit(self, now: float) -> bool:
        """Whether a line at `now` may go; a refused one is counted for the next summary."""
        if self._at is not None:
            self._tokens = min(
                float(self.rate.burst), self._tokens + (now - self._at) * self.rate.per_second
            )
        self._at = now if self._at is None else max(self._at, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if self._count == 0:
            self._first = now
        self._count += 1
        self._last = now
        return False

    @property
    def suppressed(self) -> int:
        """Refused lines not summed up yet."""
        return self._count

    @property
    def due_at(self) -> float | None:
        """When the summary of the refused lines is due (None: nothing refused)."""
        return self._first + self.window if self._count else None

    def due(self, now: float, *, final: bool = False) -> Suppressed | None:
        """The summary of refused lines once a window has passed since the first (at once with
        `final`: the stream ended); None when there is nothing to tell yet."""
        if self._count == 0 or (not final and now - self._first < self.window):
            return None
        summary = Suppressed(self._count, self._first, self._last)
        self._count = 0
        return summary

    def idle(self, now: float) -> bool:
        """Full again with nothing to tell: the limiter can be forgotten."""
        return self._count == 0 and (
            self._at is None
            or self._tokens + (now - self._at) * self.rate.per_second >= self.rate.burst
        )
