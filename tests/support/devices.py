"""Real device nodes for the device tests: loop devices added and removed through the kernel.

`LoopDevice` asks /dev/loop-control for a loop device of its own (LOOP_CTL_ADD with an index
nothing uses) and removes it again (LOOP_CTL_REMOVE). Each is a real hot-plug: the kernel sends
`add` and `remove` uevents, devtmpfs makes and drops /dev/loopN, and /sys/block/loopN carries
the properties udev (or, without udevd, the kernel) reports. `udev_properties` reads them back
through pyudev the way the enforcer's scan does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.ci import missing
from tests.support.processes import die_with_parent, stop_pid, wait_for

__all__ = ["LoopDevice", "loop_device", "udev_properties", "udevd"]

LOOP_CONTROL = Path("/dev/loop-control")
LOOP_CTL_ADD = 0x4C80
LOOP_CTL_REMOVE = 0x4C81


class LoopDevice:
    """A loop device of our own: `node` is /dev/loopN once `add`ed, gone after `remove`."""

    def __init__(self) -> None:
        self.index = self._free_index()

    @staticmethod
    def _free_index() -> int:
        used = {int(p.name[4:]) for p in Path("/sys/block").glob("loop*") if p.name[4:].isdigit()}
        free = sorted(set(range(300, 1000)) - used)
        return random.Random(os.getpid()).choice(free)

    @property
    def node(self) -> str:
        return f"/dev/loop{self.index}"

    @property
    def sys_path(self) -> Path:
        return Path("/sys/block") / f"loop{self.index}"

    def present(self) -> bool:
        return self.sys_path.exists() and os.path.exists(self.node)

    def _control(self, request: int) -> None:
        fd = os.open(LOOP_CONTROL, os.O_RDWR)
        try:
            fcntl.ioctl(fd, request, self.index)
        finally:
            os.close(fd)

    def add(self) -> None:
        self._control(LOOP_CTL_ADD)

    def remove(self) -> None:
        if self.sys_path.exists():
            self._control(LOOP_CTL_REMOVE)


@contextlib.contextmanager
def loop_device(added: bool = True) -> Iterator[LoopDevice]:
    """A loop device of this test's own (added now unless `added` is false); removed after.

    Needs /dev/loop-control and root: where they are missing the test fails in CI and skips
    elsewhere."""
    if not LOOP_CONTROL.exists():
        missing(f"{LOOP_CONTROL} is missing (modprobe loop)")
    if not os.access(LOOP_CONTROL, os.R_OK | os.W_OK):
        missing(f"{LOOP_CONTROL} needs root")
    device = LoopDevice()
    try:
        if added:
            device.add()
        yield device
    finally:
        device.remove()


def udev_properties(node: str) -> dict[str, str]:
    """The properties udev reports for the device node (from /sys and, with udevd, its database)."""
    import pyudev

    device = pyudev.Devices.from_device_file(pyudev.Context(), node)
    return {str(k): str(v) for k, v in device.properties.items()}


UDEVD = Path("/lib/systemd/systemd-udevd")
UDEV_CONTROL = Path("/run/udev/control")


def _udevd_answers() -> bool:
    ping = subprocess.run(
        ["udevadm", "control", "--ping", "--timeout=2"], capture_output=True, check=False
    )
    return ping.returncode == 0


@contextlib.contextmanager
def udevd() -> Iterator[None]:
    """The machine's udevd, or one of our own (Debian's `udev` package) while the test runs:
    it handles only the events that happen meanwhile (nothing is triggered), and is stopped by
    its pid afterwards, with the /run/udev it made."""
    if UDEV_CONTROL.exists() and _udevd_answers():
        yield
        return
    if not UDEVD.exists():
        missing(f"no udevd on this machine ({UDEVD} is missing: apt-get install udev)")
    made = not UDEV_CONTROL.parent.exists()
    proc = subprocess.Popen(
        [str(UDEVD), "--resolve-names=never"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    try:
        wait_for(lambda: UDEV_CONTROL.exists() and _udevd_answers(), 10, "udevd to answer")
        yield
    finally:
        stop_pid(proc)
        if made:
            shutil.rmtree(UDEV_CONTROL.parent, ignore_errors=True)
