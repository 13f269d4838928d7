"""One streamed HTTP GET to the Docker engine, its body read in bulk.

Over HTTP/1.1 Docker sends a followed log stream as one chunk per line, and an HTTP client
library wakes Python code for every chunk. Asked in HTTP/1.0, it sends the stream as it is
and closes the connection at its end; the body is read up to 64 KiB at a time, so a busy
stream costs little more than the lines it holds. A chunked answer is still taken apart
(`Dechunker`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["Dechunker", "HttpError", "stream_get"]

READ_BYTES = 65536
HEAD_LIMIT = 65536


class HttpError(Exception):
    """The engine answered with a status other than 200; str() holds the start of its body."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status} {body}".strip())
        self.status = status


class Dechunker:
    """HTTP/1.1 chunked transfer coding, fed in any pieces; `done` after the last chunk."""

    def __init__(self) -> None:
        self._rest = b""
        self._left = 0  # data bytes still to come of the current chunk
        self._skip = 0  # the CRLF after a chunk's data
        self.done = False

    def feed(self, data: bytes) -> bytes:
        buf = self._rest + data if self._rest else data
        out: list[bytes] = []
        pos, n = 0, len(buf)
        while pos < n and not self.done:
            if self._left:
                take = min(self._left, n - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._skip = 2
                continue
            if self._skip:
                take = min(self._skip, n - pos)
                pos += take
                self._skip -= take
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            try:
                size = int(buf[pos:end].split(b";", 1)[0], 16)
            except ValueError:
                raise HttpError(0, "a malformed chunked body") from None
            pos = end + 2
            if size == 0:
                self.done = True
            self._left = size
        self._rest = buf[pos:] if pos < n and not self.done else b""
        return b"".join(out)


async def stream_get(
    socket_path: str | None, host: str, port: int, target: str, pause: float = 0.0
) -> AsyncIterator[bytes]:
    """GET `target` (path and query) from the engine, yielding its body as it arrives; with
    `pause`, waiting that long between reads so a busy stream arrives in fewer, larger reads.

    Raises HttpError (not 200), OSError (unreachable) or asyncio.IncompleteReadError."""
    if socket_path is not None:
        reader, writer = await asyncio.open_unix_connection(socket_path, limit=HEAD_LIMIT)
    else:
        reader, writer = await asyncio.open_connection(host, port, limit=HEAD_LIMIT)
    try:
        writer.write(f"GET {target} HTTP/1.0\r\nHost: docker\r\n\r\n".encode("ascii"))
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for header in header_lines:
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = value.strip()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        dechunk = Dechunker() if chunked else None
        if status != 200:
            raw = await reader.read(READ_BYTES)
            body = dechunk.feed(raw) if dechunk else raw
            raise HttpError(status, body[:1000].decode("utf-8", "replace").strip())
        while data := await reader.read(READ_BYTES):
            body = dechunk.feed(data) if dechunk else data
            if body:
                yield body
            if dechunk is not None and dechunk.done:
                return
            if pause:  # the engine's writes wait in the socket meanwhile: no wake-up each
                transport = writer.transport
                assert isinstance(transport, asyncio.ReadTransport)
                transport.pause_reading()
                await asyncio.sleep(pause)
                transport.resume_reading()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
