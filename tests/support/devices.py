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
from collections.abc import Iterator
from pathlib import Path

from tests.support.ci import missing

__all__ = ["LoopDevice", "loop_device", "udev_properties"]

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
