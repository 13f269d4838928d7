"""Child processes of the suite: free loopback ports, waiting for readiness, stopping by pid."""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable


class MissingPart(RuntimeError):
    """A real part (dockerd, docker-registry, busybox-static) is not installed."""


class Exited(RuntimeError):
    """A process we wait for has exited: no use waiting longer."""


def installed(program: str, package: str) -> str:
    """The path of `program`; MissingPart naming the Debian `package` when it is not there."""
    path = shutil.which(program)
    if path is None:
        raise MissingPart(f"{program} is not installed (apt-get install {package})")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Until `predicate()` is true. Its exceptions count as "not yet" (the last one is reported
    on timeout), except `MissingPart` and `Exited`, which end the wait at once."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (MissingPart, Exited):
            raise
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last})")


def stop_pid(proc: subprocess.Popen[bytes], timeout: float = 20, sig: int = signal.SIGTERM) -> None:
    """`sig` to the child we started, SIGKILL if it is not gone within `timeout`."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def die_with_parent() -> None:
    """In a child (`preexec_fn`): SIGTERM when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
