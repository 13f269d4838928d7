"""Fixtures of the integration tests that run control."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.control import ControlProcess
from tests.support.postgres import postgres_cluster  # noqa: F401 (the session's PostgreSQL)


@pytest.fixture()
def control() -> Iterator[ControlProcess]:
    """A real `edge-control serve` on a free loopback port, with a fresh state directory."""
    root = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))
    process = ControlProcess(root)
    process.start()
    yield process
    process.stop()
    shutil.rmtree(root, ignore_errors=True)
