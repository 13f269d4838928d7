"""Control's log requests (found in the long-poll) and the replies the site sends back.

Pure: a request is checked here, the lines are gathered by `ReplyLines` (the newest kept
within `REPLY_BYTES`, each cut at `REPLY_LINE_BYTES`), and the daemon fetches the lines.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from enforcer.logs.errors import REPLY_LINE_BYTES, cut

__all__ = ["MAX_TAIL", "REPLY_BYTES", "LogRequest", "ReplyLines", "parse_request"]

REPLY_BYTES = 1024 * 1024  # the lines of one reply, at most
MAX_TAIL = 10_000


@dataclass(frozen=True)
class LogRequest:
    id: str
    instance: str
    container: str | None
    tail: int


def parse_request(doc: Any) -> LogRequest:
    """A request of control's; ValueError says what is wrong with it."""
    if not isinstance(doc, dict):
        raise ValueError("a request must be an object")
    if doc.get("kind") != "logs":
        raise ValueError(f"unknown request kind {doc.get('kind')!r} (this site answers: logs)")
    instance, container, tail = doc.get("instance"), doc.get("container"), doc.get("tail", 100)
    if not isinstance(instance, str) or not instance:
        raise ValueError("a logs request names no instance")
    if container is not None and (not isinstance(container, str) or not container):
        raise ValueError("container: expected a container's name or null")
    if type(tail) is not int or not 1 <= tail <= MAX_TAIL:
        raise ValueError(f"tail: expected a number of lines from 1 to {MAX_TAIL}, got {tail!r}")
    return LogRequest(str(doc.get("id", "")), instance, container, tail)


class ReplyLines:
    """The newest lines that fit in `budget` bytes, in order."""

    def __init__(self, budget: int = REPLY_BYTES) -> None:
        self.budget = budget
        self.used = 0
        self._lines: deque[tuple[dict[str, Any], int]] = deque()

    def add(self, at: float, stream: str, head: bytes, size: int) -> None:
        text = cut(head, size, REPLY_LINE_BYTES)
        cost = len(text.encode("utf-8"))
        self._lines.append(({"time": at, "stream": stream, "line": text}, cost))
        self.used += cost
        while self.used > self.budget and self._lines:
            self.used -= self._lines.popleft()[1]

    def lines(self) -> list[dict[str, Any]]:
        return [line for line, _ in self._lines]
