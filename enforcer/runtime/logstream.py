"""Containers' log lines read from the Docker engine on the event loop, without a thread each.

The docker SDK reads streams on a thread each (`enforcer.runtime.streams`); following every
managed container that way would cost a thread per container. `DockerLogs` asks the engine's
HTTP API itself (over its unix socket or TCP, `enforcer.runtime.rawhttp`) with timestamps,
demultiplexes stdout and stderr, joins the parts Docker splits long lines into, and yields the
lines in lists of what arrived together. Of a line it keeps at most `keep` bytes: a 1 MB line
is never held whole.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

from enforcer.reconcile.runtime import RuntimeRequestError, RuntimeUnavailable
from enforcer.runtime.rawhttp import HttpError, stream_get

__all__ = ["Demultiplexer", "DockerLogs", "LogLine", "follow_after"]

API_VERSION = "1.41"
GATHER_SECONDS = 0.05  # a followed stream is read at most this often (Docker sends line by line)
HOLD_BYTES = 65536  # a frame up to this size is held whole; a longer one is read on in pieces
_STREAMS = {1: "stdout", 2: "stderr"}
STAMP_BYTES = 30  # "2026-11-30T02:49:55.123456789Z": Docker's fixed-width timestamps
PART_BYTES = 16384  # Docker splits longer lines into parts of this size; the last is shorter
# (Docker 20.10 sends the last part of a split line without its newline)


class LogLine:
    """One line a container wrote (a slotted class: the forwarder makes thousands a second)."""

    __slots__ = ("head", "raw_stamp", "size", "stream")

    def __init__(self, raw_stamp: bytes, stream: str, head: bytes, size: int) -> None:
        self.raw_stamp = raw_stamp  # Docker's timestamp of its last part (ASCII)
        self.stream = stream  # "stdout" | "stderr"
        self.head = head  # its first bytes (at most the reader's `keep`), without the newline
        self.size = size  # its length in bytes, without the newline

    @property
    def time(self) -> float:
        """The unix time Docker took it."""
        return _clock(self.raw_stamp)

    @property
    def stamp(self) -> str:
        """Docker's timestamp: `follow_after` goes on after it."""
        return self.raw_stamp.decode("ascii", "replace")


def follow_after(stamp: str) -> str:
    """Docker's ``since`` for the lines after the one stamped `stamp` (one nanosecond later)."""
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    whole = calendar.timegm(time.strptime(seconds, "%Y-%m-%dT%H:%M:%S"))
    nanos = int((fraction + "000000000")[:9]) + 1
    return f"{whole + nanos // 1_000_000_000}.{nanos % 1_000_000_000:09d}"


class _Clock:
    """Docker's timestamps to unix time; the seconds part is parsed once per second."""

    def __init__(self) -> None:
        self._prefix = b""
        self._epoch = 0

    def __call__(self, stamp: bytes) -> float:
        prefix = stamp[:19]
        if prefix != self._prefix:
            try:
                parsed = time.strptime(prefix.decode("ascii"), "%Y-%m-%dT%H:%M:%S")
            except (UnicodeDecodeError, ValueError):
                return time.time()
            self._prefix, self._epoch = prefix, calendar.timegm(parsed)
        try:
            return self._epoch + float(b"0" + stamp[19:29])
        except ValueError:
            return float(self._epoch)


_clock = _Clock()


class _Line:
    __slots__ = ("head", "size", "stamp")

    def __init__(self) -> None:
        self.head = bytearray()
        self.size = 0
        self.stamp = b""


class DockerLogs:
    """Log streams of the engine at `base_url` (``unix:///...`` or ``tcp://host:port``)."""

    def __init__(self, base_url: str) -> None:
        scheme, _, rest = base_url.partition("://")
        self.base_url = base_url
        self._socket: str | None = None
        self._host, self._port = "", 0
        if scheme == "unix":
            self._socket = "/" + rest.lstrip("/")
        elif scheme in ("tcp", "http"):
            host, _, port = rest.rstrip("/").rpartition(":")
            self._host, self._port = host.strip("[]"), int(port or 2375)
        # else ssh://, npipe://: only the SDK's streams work (`DockerRuntime.logs`)

    async def close(self) -> None:
        """Nothing stays open between streams."""

    async def batches(
        self,
        container_id: str,
        *,
        follow: bool,
        keep: int,
        tail: int | None = None,
        since: str = "",
        stdout_words: tuple[bytes, ...] = (),
    ) -> AsyncIterator[list[LogLine]]:
        """The container's lines (the last `tail`, or those after `since`), then, with `follow`,
        each new one until the container stops; in lists of what arrived together. With
        `stdout_words`, only the stdout lines with one of them in (`Demultiplexer`).
        RuntimeRequestError: no such container."""
        if self._socket is None and not self._host:
            raise RuntimeUnavailable(
                f"{self.base_url}: log streams are read from unix:// or tcp:// Docker hosts only"
            )
        params = {"stdout": "1", "stderr": "1", "timestamps": "1", "follow": "1" if follow else "0"}
        params["tail"] = "all" if tail is None else str(tail)
        if since:
            params["since"] = since
        target = f"/v{API_VERSION}/containers/{quote(container_id, safe='')}/logs?" + urlencode(
            params
        )
        demux = Demultiplexer(keep, stdout_words)
        try:
            async for data in stream_get(
                self._socket, self._host, self._port, target, GATHER_SECONDS if follow else 0.0
            ):
                lines = demux.feed(data)
                if lines:
                    yield lines
        except HttpError as exc:
            raise RuntimeRequestError(
                f"Docker refused the logs of {container_id[:12]}: {exc}"
            ) from exc
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise RuntimeUnavailable(f"Docker engine unreachable: {exc}") from exc
        if rest := demux.end():
            yield rest

    async def lines(
        self,
        container_id: str,
        *,
        follow: bool,
        keep: int,
        tail: int | None = None,
        since: str = "",
    ) -> AsyncIterator[LogLine]:
        """`batches`, one line at a time."""
        async for batch in self.batches(
            container_id, follow=follow, keep=keep, tail=tail, since=since
        ):
            for line in batch:
                yield line


class Demultiplexer:
    """Docker's multiplexed stream (8-byte frame headers) to lines. Each frame is a
    timestamped part of a line; a line's last part ends with a newline, or is shorter than
    `PART_BYTES`. A frame is held whole only up to `HOLD_BYTES`; a longer one is read on in
    pieces, keeping `keep` bytes of its line."""

    def __init__(self, keep: int, stdout_words: tuple[bytes, ...] = ()) -> None:
        self.keep = keep
        # whole stdout lines without any of these (lower-case) words are passed over
        self.stdout_words = stdout_words
        self._rest = b""  # an incomplete header or frame
        self._partial: dict[int, _Line] = {}  # by stream: a line whose parts are arriving
        self._left = 0  # bytes still to come of a long frame being read on
        self._long: tuple[int, _Line, int] | None = None  # its stream, line and size

    def feed(self, data: bytes) -> list[LogLine]:
        buf = self._rest + data if self._rest else data
        out: list[LogLine] = []
        pos, n, keep = 0, len(buf), self.keep
        found = _positions(buf, self.stdout_words) if self.stdout_words else []
        next_found, at = (found[0] if found else n), 0
        partial = self._partial
        while True:
            if self._left:  # inside a long frame
                take = min(self._left, n - pos)
                if take == 0:
                    break
                assert self._long is not None
                kind, long_line, size = self._long
                piece = buf[pos : pos + take]
                pos += take
                self._left -= take
                _add(long_line, piece, keep)
                if not self._left:
                    self._long = None
                    self._end_part(out, kind, long_line, piece[-1:], size)
                continue
            if n - pos < 8:
                break
            kind, size = buf[pos], int.from_bytes(buf[pos + 4 : pos + 8], "big")
            if n - pos - 8 < size:  # not all here yet
                if size <= HOLD_BYTES or n - pos - 8 < STAMP_BYTES + 1:
                    break
                long_line = partial.get(kind) or partial.setdefault(kind, _Line())
                long_line.stamp = buf[pos + 8 : pos + 8 + STAMP_BYTES]
                self._left = size - STAMP_BYTES - 1
                self._long = (kind, long_line, size)
                pos += 8 + STAMP_BYTES + 1
                continue
            start = pos
            pos += 8 + size
            if size <= STAMP_BYTES:
                continue  # not a timestamped part
            if self.stdout_words and kind == 1 and kind not in partial:
                while next_found < start:
                    at += 1
                    next_found = found[at] if at < len(found) else n
                if next_found >= pos and buf[pos - 1] == 10:
                    continue  # a whole stdout line without any of the words
            frame = buf[start + 8 : pos]
            line = partial.get(kind)
            if line is None and frame[-1] == 10:  # the common case: a whole line
                out.append(
                    LogLine(frame[:STAMP_BYTES], _STREAMS.get(kind, "stdout"),
                            frame[STAMP_BYTES + 1 : STAMP_BYTES + 1 + keep]
                            if size - STAMP_BYTES - 2 > keep else frame[STAMP_BYTES + 1 : -1],
                            size - STAMP_BYTES - 2)
                )  # fmt: skip
                continue
            if line is None:
                line = partial[kind] = _Line()
            line.stamp = frame[:STAMP_BYTES]
            _add(line, frame[STAMP_BYTES + 1 :], keep)
            self._end_part(out, kind, line, frame[-1:], size)
        self._rest = buf[pos:] if pos < n else b""
        return out

    def _end_part(self, out: list[LogLine], kind: int, line: _Line, last: bytes, size: int) -> None:
        """A part of `line` ended: the line ends with it when it has a newline or is short."""
        if last == b"\n" or size - STAMP_BYTES - 1 < PART_BYTES:
            del self._partial[kind]
            if last == b"\n":
                line.size -= 1
            head = bytes(line.head[: min(self.keep, line.size)])
            out.append(LogLine(line.stamp, _STREAMS.get(kind, "stdout"), head, line.size))

    def end(self) -> list[LogLine]:
        """The lines the stream ended inside of."""
        lines = [
            LogLine(line.stamp, _STREAMS.get(kind, "stdout"), bytes(line.head[: self.keep]),
                    line.size)
            for kind, line in self._partial.items()
        ]  # fmt: skip
        self._partial.clear()
        return lines


def _positions(buf: bytes, words: tuple[bytes, ...]) -> list[int]:
    """Where the words are in `buf`, whatever their case, in order (a few scans in C)."""
    low = buf.lower()
    found = []
    for word in words:
        at = low.find(word)
        while at >= 0:
            found.append(at)
            at = low.find(word, at + 1)
    found.sort()
    return found


def _add(line: _Line, piece: bytes, keep: int) -> None:
    room = keep + 1 - len(line.head)  # one more: the newline may be among the kept bytes
    if room > 0:
        line.head += piece[:room]
    line.size += len(piece)
