"""Docker's multiplexed log stream to lines, however the bytes arrive."""

from __future__ import annotations

from enforcer.runtime.logstream import PART_BYTES, Demultiplexer, LogLine, follow_after

STAMP = b"2026-11-30T02:49:55.123456789Z"


def frame(stream: int, text: bytes, stamp: bytes = STAMP) -> bytes:
    payload = stamp + b" " + text
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def read(data: bytes, keep: int, piece: int) -> list[LogLine]:
    demux = Demultiplexer(keep)
    lines: list[LogLine] = []
    for n in range(0, len(data), piece):
        lines += demux.feed(data[n : n + piece])
    return lines + demux.end()


def parts(text: bytes) -> list[bytes]:
    """A long line as Docker 20.10 sends it: parts of PART_BYTES, the last without newline."""
    return [text[n : n + PART_BYTES] for n in range(0, len(text), PART_BYTES)]


def test_lines_come_apart_by_stream_whatever_the_pieces_they_arrive_in() -> None:
    data = frame(1, b"hello\n") + frame(2, b"oops\n") + frame(1, b"\n") + frame(1, b"bye\n")
    for piece in (1, 3, 7, 8, 9, 40, len(data)):
        lines = read(data, 100, piece)
        assert [(x.stream, x.head, x.size) for x in lines] == [
            ("stdout", b"hello", 5), ("stderr", b"oops", 4), ("stdout", b"", 0),
            ("stdout", b"bye", 3),
        ]  # fmt: skip
    assert lines[0].time == 1796006995.1234567 and lines[0].stamp == STAMP.decode()


def test_a_line_split_in_parts_is_joined_and_only_its_head_is_kept() -> None:
    big = b"x" * 1_000_000
    data = b"".join(frame(1, p) for p in parts(big)) + frame(2, b"err\n") + frame(1, b"next\n")
    lines = read(data, 64, 5000)
    assert [(x.stream, x.head, x.size) for x in lines] == [
        ("stdout", b"x" * 64, 1_000_000), ("stderr", b"err", 3), ("stdout", b"next", 4),
    ]  # fmt: skip


def test_a_frame_longer_than_what_is_held_is_read_on_in_pieces() -> None:
    data = frame(2, b"y" * 300_000 + b"\n") + frame(1, b"after\n")
    demux = Demultiplexer(10)
    lines: list[LogLine] = []
    for n in range(0, len(data), 65536):
        lines += demux.feed(data[n : n + 65536])
        assert len(demux._rest) < 70_000  # never the whole frame
    assert [(x.head, x.size) for x in lines] == [(b"y" * 10, 300_000), (b"after", 5)]


def test_a_stream_that_ends_inside_a_line_gives_what_it_had() -> None:
    lines = read(frame(1, b"z" * PART_BYTES), 100, 1000)
    assert [(x.head, x.size) for x in lines] == [(b"z" * 100, PART_BYTES)]


def test_following_goes_on_one_nanosecond_after_the_last_line() -> None:
    assert follow_after(STAMP.decode()) == "1796006995.123456790"
    assert follow_after("2026-11-30T02:49:55.999999999Z") == "1796006996.000000000"


def test_a_chunked_body_is_taken_apart_in_any_pieces() -> None:
    from enforcer.runtime.rawhttp import Dechunker

    body = b"5\r\nhello\r\n1;ext=1\r\n \r\n1a\r\n" + b"w" * 26 + b"\r\n0\r\n\r\n"
    for piece in (1, 2, 5, 13, len(body)):
        dechunk = Dechunker()
        out = b"".join(dechunk.feed(body[n : n + piece]) for n in range(0, len(body), piece))
        assert out == b"hello " + b"w" * 26
        assert dechunk.done


def test_with_a_filter_only_stdout_lines_it_finds_something_in_come_out() -> None:
    from enforcer.logs.errors import LEVEL_WORDS

    data = (
        frame(1, b"GET / 200\n") + frame(1, b"level=error boom\n") + frame(2, b"stderr always\n")
        + frame(1, b"ok\n") + frame(1, b"FATAL: x\n")
    )  # fmt: skip
    for piece in (1, 9, 50, len(data)):
        demux = Demultiplexer(100, LEVEL_WORDS)
        lines = [x for n in range(0, len(data), piece) for x in demux.feed(data[n : n + piece])]
        assert [x.head for x in lines] == [b"level=error boom", b"stderr always", b"FATAL: x"]
