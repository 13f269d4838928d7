"""The pyudev side of device discovery: scanning the udev database and following hot-plug.

`scan_state` reads every device of the udev database; `DeviceWatcher` keeps the inventory
current from a netlink monitor. What the properties mean is decided in the pure modules
(`enforcer.devices.rules`, `enforcer.devices.inventory`); this module only reads them.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from enforcer.devices.inventory import Inventory, InventoryState, apply_event, is_display
from enforcer.devices.rules import BUILTIN_LABELS, DeviceRule

__all__ = ["DeviceWatcher", "properties_of", "scan", "scan_state"]

log = logging.getLogger(__name__)

UDEV_CONTROL = "/run/udev/control"  # exists while systemd-udevd runs (libudev checks the same)
NVIDIA_PROC = "/proc/driver/nvidia/gpus"


def properties_of(device: Any) -> dict[str, str]:
    """A pyudev device's properties, plus the GPU facts that udev does not carry."""
    props = {str(k): str(v) for k, v in device.properties.items()}
    if props.get("SUBSYSTEM") != "pci" or not is_display(props):
        return props
    try:
        vram = device.attributes.get("mem_info_vram_total")
    except (OSError, KeyError, AttributeError):
        vram = None
    if vram:
        props["ATTR{mem_info_vram_total}"] = bytes(vram).decode("ascii", "replace").strip()
    slot = props.get("PCI_SLOT_NAME")
    if slot and props.get("DRIVER") == "nvidia":
        props.update(_nvidia_proc_info(os.path.join(NVIDIA_PROC, slot, "information")))
    return props


def _nvidia_proc_info(path: str) -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "Device Minor" and value.strip().isdigit():
                    info["NVIDIA_DEVICE_MINOR"] = value.strip()
                elif key.strip() == "Model" and value.strip():
                    info["NVIDIA_MODEL"] = value.strip()
    except OSError:
        pass
    return info


def scan_state(rules: Sequence[DeviceRule], context: Any = None) -> InventoryState:
    """Every device in the udev database (/sys and /run/udev/data) with its inventory."""
    import pyudev

    ctx = context if context is not None else pyudev.Context()
    return InventoryState.from_properties((properties_of(d) for d in ctx.list_devices()), rules)


def scan(rules: Sequence[DeviceRule]) -> Inventory:
    """This host's inventory now."""
    return scan_state(rules).inventory


# the subsystems of the built-in labels and GPUs: cameras, DRM render nodes, PCI GPUs
RELEVANT_BUILTIN_SUBSYSTEMS = ("video4linux", "drm", "pci", "nvidia*")


class DeviceWatcher:
    """Keeps this host's inventory current and calls `on_change` when it changes.

    `start` opens a netlink monitor, scans, then reads the monitor on the event loop (its file
    descriptor with ``loop.add_reader``); every event goes through `handle_event`, the method
    tests call with recorded property sets. Without udevd (no /run/udev/control) it follows the
    kernel's own uevents, which carry the same properties as a scan without udevd; with
    `kernel_fallback` off, or where netlink is not available at all, it logs a warning and
    keeps the inventory of the start. `on_change` may return an awaitable; it runs as a task.
    """

    def __init__(
        self,
        rules: Sequence[DeviceRule],
        on_change: Callable[[Inventory], object],
        *,
        context: Any = None,
        udev_control: str = UDEV_CONTROL,
        kernel_fallback: bool = True,
    ) -> None:
        self.rules = tuple(rules)
        self.on_change = on_change
        self.state = InventoryState(inventory=Inventory(defined_labels=self._defined()))
        self.source: str | None = None  # "udev" or "kernel" while monitoring
        self._context = context
        self._udev_control = udev_control
        self._kernel_fallback = kernel_fallback
        self._monitor: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    def _defined(self) -> frozenset[str]:
        return BUILTIN_LABELS | {rule.label for rule in self.rules}

    @property
    def inventory(self) -> Inventory:
        return self.state.inventory

    @property
    def monitoring(self) -> bool:
        """Whether hot-plug events are being followed."""
        return self._monitor is not None

    async def start(self) -> Inventory:
        import pyudev

        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._context is None:
            self._context = pyudev.Context()
        monitor = self._open_monitor()  # before the scan, so no event falls in between
        self.state = await loop.run_in_executor(None, scan_state, self.rules, self._context)
        if monitor is not None:
            try:
                loop.add_reader(monitor.fileno(), self._readable)
                self._monitor = monitor
            except (OSError, ValueError, NotImplementedError) as exc:
                self.source = None
                log.warning(
                    "device hot-plug is not followed (%s); keeping the devices of the start", exc
                )
        return self.inventory

    def _open_monitor(self) -> Any:
        import pyudev

        source = "udev"
        if not os.path.exists(self._udev_control):
            if not self._kernel_fallback:
                log.warning(
                    "udevd is not running (no %s): device hot-plug is not followed; keeping "
                    "the devices found at start",
                    self._udev_control,
                )
                return None
            log.warning(
                "udevd is not running (no %s): following the kernel's device events, which "
                "lack udev's properties (ID_VENDOR_ID, ID_V4L_CAPABILITIES ...)",
                self._udev_control,
            )
            source = "kernel"
        try:
            monitor = pyudev.Monitor.from_netlink(self._context, source=source)
            monitor.start()
        except (OSError, ValueError, pyudev.DeviceNotFoundError) as exc:
            log.warning(
                "cannot follow device events (%s): hot-plug is not followed; keeping the "
                "devices found at start",
                exc,
            )
            return None
        self.source = source
        return monitor

    def _readable(self) -> None:
        monitor = self._monitor
        for _ in range(256):  # a burst; the reader fires again for the rest
            if monitor is None:
                return
            try:
                device = monitor.poll(timeout=0)
            except OSError as exc:
                log.warning("reading a udev event failed: %s", exc)
                return
            if device is None:
                return
            if not self._relevant(device.subsystem or ""):
                continue  # e.g. the veth pair of every container start: no labels come of it
            try:
                self.handle_event(device.action or "change", properties_of(device))
            except Exception:  # one bad event must not stop the watcher
                log.exception("applying the udev event for %s failed", device.device_path)

    def _relevant(self, subsystem: str) -> bool:
        """Whether an event of `subsystem` can change a label or a GPU."""
        patterns = [dict(rule.match).get("SUBSYSTEM") for rule in self.rules]
        if any(p is None for p in patterns):
            return True  # a rule that matches any subsystem
        wanted = (*RELEVANT_BUILTIN_SUBSYSTEMS, *(p for p in patterns if p is not None))
        return any(fnmatch.fnmatchcase(subsystem, p) for p in wanted)

    def handle_event(self, action: str, properties: Mapping[str, str]) -> None:
        """Apply one udev event; call `on_change` when the inventory changed."""
        before = self.state.inventory
        self.state = apply_event(self.state, action, properties, self.rules)
        if self.state.inventory != before:
            log.info(
                "devices changed (%s %s): labels %s, %d GPU(s)",
                action,
                properties.get("DEVNAME") or properties.get("DEVPATH"),
                ", ".join(sorted(self.state.inventory.labels)) or "none",
                len(self.state.inventory.gpus),
            )
            result = self.on_change(self.state.inventory)
            if inspect.isawaitable(result):
                task: asyncio.Task[object] = asyncio.ensure_future(result)
                task.set_name("devices-on-change")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        monitor, self._monitor = self._monitor, None
        self.source = None
        if monitor is not None and self._loop is not None:
            self._loop.remove_reader(monitor.fileno())
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
