"""Enrolling fails in one line that says why, before anything is written."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from enforcer.link.enrollment import EnrollmentError, enroll
from enforcer.shared.bundle import Bundle, encode_bundle


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_control_is_one_line_and_leaves_no_identity(tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{closed_port()}"
    bundle = encode_bundle(Bundle(url, "ab" * 32, "s3cret", "store-1"))
    with pytest.raises(EnrollmentError) as info:
        asyncio.run(enroll(bundle, tmp_path))
    assert str(info.value) == f"cannot reach control at {url}/v1/enrollment/ca: connection refused"
    assert not (tmp_path / "site").exists()


def test_a_garbled_bundle_is_an_enrollment_error(tmp_path: Path) -> None:
    with pytest.raises(EnrollmentError, match="the enrollment bundle is garbled"):
        asyncio.run(enroll("not a bundle", tmp_path))
