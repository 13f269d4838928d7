"""`edge-enforcer logs -f` against a real enforcer process and a real dockerd: a quiet container
is followed for as long as it takes, and a slow reader never makes the enforcer buffer without
bound."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apps import app, container, service
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine

CALL_TIMEOUT_S = 5  # [docker] timeout: the read timeout of the enforcer's calls to Docker
QUIET_S = 12  # longer than it (the CLI reads a followed stream with no read timeout at all:
# tests/unit/test_cli_client_streams.py)


@pytest.fixture()
def impatient(engine: DockerEngine) -> Iterator[EnforcerProc]:
    """An enforcer whose calls to Docker time out after a few seconds."""
    root = Path(tempfile.mkdtemp(prefix="logs-", dir="/tmp"))
    enf = EnforcerProc(root, engine.url)
    enf.write_config()
    text = enf.config_path.read_text()
    enf.config_path.write_text(
        text.replace("[docker]\n", f'[docker]\ntimeout = "{CALL_TIMEOUT_S}s"\n')
    )
    enf.start()
    yield enf
    enf.cli("rm", "quiet")
    enf.cli("rm", "spew")
    enf.stop()
    enf.remove_firewall()
    shutil.rmtree(root, ignore_errors=True)


def test_logs_follow_a_quiet_container_past_every_read_timeout(
    impatient: EnforcerProc, test_image: str
) -> None:
    script = f"echo first; sleep {QUIET_S}; echo second; sleep 100000"
    impatient.apply(app("quiet", service("q", container("main", test_image, "sh", "-c", script))))
    impatient.wait_running("quiet.q.0")
    lines: list[str] = []
    with subprocess.Popen(
        impatient.command("logs", "-f", "quiet.q.0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:

        def read() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                lines.append(line.strip())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + QUIET_S + 20
            while "second" not in lines and time.monotonic() < deadline:
                assert follower.poll() is None, "logs -f ended during the silence"
                time.sleep(0.5)
            assert lines[:2] == ["first", "second"]
        finally:
            follower.terminate()
            follower.communicate(timeout=10)


def test_a_reader_that_does_not_read_never_makes_the_enforcer_buffer_the_output(
    impatient: EnforcerProc, test_image: str
) -> None:
    # about 8 MB/s of output; a client that asks to follow it and then reads nothing
    script = "while true; do head -c 800000 /dev/zero | tr '\\0' a; echo; sleep 0.1; done"
    impatient.apply(app("spew", service("s", container("main", test_image, "sh", "-c", script))))
    impatient.wait_running("spew.s.0")
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(str(impatient.socket))
    try:
        stalled.sendall(
            b"GET /v1/instances/spew.s.0/logs?follow=true HTTP/1.1\r\nHost: enforcer\r\n\r\n"
        )
        assert stalled.recv(64).startswith(b"HTTP/1.1 200")
        time.sleep(3)  # the pipe to the client is full by now
        before = impatient.process().memory_info().rss
        time.sleep(5)  # some 40 MB more output that nobody reads
        grown = impatient.process().memory_info().rss - before
        assert grown < 16 * 2**20, f"the enforcer grew by {grown / 2**20:.0f} MB"
        assert impatient.cli("status").returncode == 0  # and it still answers
    finally:
        stalled.close()
