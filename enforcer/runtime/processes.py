"""Processes of the host the enforcer ends itself: an exec probe that outlived its time."""

from __future__ import annotations

import contextlib
import os
import signal


def kill_tree(pid: int) -> None:
    """SIGKILL a process of the host and its descendants (an exec that outlived its time)."""
    if pid <= 0:
        return
    for child in _children(pid):
        kill_tree(child)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
    return out
