"""Devices of this host (DESIGN.md, "Devices"): discovery with pyudev, labels, GPUs, hot-plug.

The pure part turns udev property sets into an `Inventory`: `classify` gives a device's labels
(the `[[devices.rule]]` rules of enforcer.toml plus the built-in ``camera``), `recognise_gpu`
tells whether a PCI or platform device is a usable GPU, and `inventory_from_properties` joins
them. `apply_event` applies one hot-plug event to an `InventoryState`; `DeviceWatcher` feeds it
from a pyudev monitor, and tests feed it recorded property sets through the same method.

Besides udev's own properties, `properties_of` adds a few that udev does not know:
``ATTR{mem_info_vram_total}`` (amdgpu's VRAM size, from sysfs) and ``NVIDIA_DEVICE_MINOR`` /
``NVIDIA_MODEL`` (from /proc/driver/nvidia/gpus/<slot>/information).
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from enforcer.shared.spec.model import Placement

__all__ = [
    "BUILTIN_LABELS",
    "Device",
    "DeviceRule",
    "DeviceWatcher",
    "Gpu",
    "Inventory",
    "InventoryState",
    "apply_event",
    "classify",
    "device_nodes_for",
    "docker_devices",
    "gpu_request",
    "gpu_requests_for",
    "inventory_from_properties",
    "parse_rules",
    "properties_of",
    "recognise_gpu",
    "scan",
    "scan_state",
]

log = logging.getLogger(__name__)

CAMERA = "camera"
BUILTIN_LABELS = frozenset({CAMERA})
UDEV_CONTROL = "/run/udev/control"  # exists while systemd-udevd runs (libudev checks the same)
NVIDIA_PROC = "/proc/driver/nvidia/gpus"

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_RULE_KEYS = ("label", "match")
_VENDORS = {
    0x10DE: ("NVIDIA Corporation", "nvidia"),
    0x8086: ("Intel Corporation", "intel"),
    0x1002: ("Advanced Micro Devices, Inc. [AMD/ATI]", "amd"),
}
_VIRTUAL_DRM = frozenset({"vgem", "vkms"})  # render nodes that are no GPU
_DISPLAY_CLASS = 0x03  # PCI base class "Display controller"
_KEPT_PROPERTIES = (
    "DEVTYPE",
    "DRIVER",
    "ID_BUS",
    "ID_MODEL",
    "ID_MODEL_ID",
    "ID_PATH",
    "ID_SERIAL",
    "ID_SERIAL_SHORT",
    "ID_USB_DRIVER",
    "ID_V4L_CAPABILITIES",
    "ID_V4L_PRODUCT",
    "ID_VENDOR",
    "ID_VENDOR_ID",
    "MAJOR",
    "MINOR",
)


# -- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRule:
    """One ``[[devices.rule]]``: every property in `match` must match its shell-style glob."""

    label: str
    match: tuple[tuple[str, str], ...]  # sorted (udev property, glob) pairs, at least one
    index: int = 0  # position in the config, for messages

    def matches(self, properties: Mapping[str, str]) -> bool:
        for key, pattern in self.match:
            value = properties.get(key)
            if value is None or not fnmatch.fnmatchcase(value, pattern):
                return False
        return True


def parse_rules(raw: Sequence[Mapping[str, Any]]) -> list[DeviceRule]:
    """The ``devices.rule`` array of enforcer.toml; raises ValueError naming the rule index."""
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise ValueError("devices.rule: must be an array of tables ([[devices.rule]])")
    rules: list[DeviceRule] = []
    for index, entry in enumerate(raw):
        where = f"devices.rule[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: must be a table with label and match")
        unknown = sorted(str(k) for k in entry if k not in _RULE_KEYS)
        if unknown:
            raise ValueError(
                f"{where}: unknown key {', '.join(repr(k) for k in unknown)} "
                "(a rule has only label and match)"
            )
        label = entry.get("label")
        if not isinstance(label, str) or not label:
            raise ValueError(f'{where}.label: missing; give the device label, e.g. "camera"')
        if _LABEL.fullmatch(label) is None:
            raise ValueError(
                f'{where}.label: "{label}" is not a label: use letters, digits and . _ / -, '
                "starting with a letter or digit"
            )
        match = entry.get("match")
        if not isinstance(match, Mapping):
            raise ValueError(
                f"{where}.match: missing; give udev properties to match, "
                'e.g. match = { SUBSYSTEM = "tty" }'
            )
        if not match:
            raise ValueError(
                f"{where}.match: is empty and would match every device; "
                "name at least one udev property"
            )
        pairs: list[tuple[str, str]] = []
        for key, pattern in match.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"{where}.match: property names must be non-empty text")
            if not isinstance(pattern, str):
                raise ValueError(
                    f'{where}.match.{key}: {pattern!r} is not text; quote it: "{pattern}"'
                )
            pairs.append((key, pattern))
        rules.append(DeviceRule(label=label, match=tuple(sorted(pairs)), index=index))
    return rules


# -- the inventory -------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """A labelled device; `node` is None for devices without one (a network interface)."""

    node: str | None
    subsystem: str
    labels: frozenset[str]
    properties: tuple[tuple[str, str], ...] = ()  # selected udev properties, sorted
    devpath: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "subsystem": self.subsystem,
            "labels": sorted(self.labels),
            "properties": dict(self.properties),
        }


@dataclass(frozen=True)
class Gpu:
    index: int  # position among this host's GPUs, ordered by PCI slot (then device path)
    vendor: str  # e.g. "NVIDIA Corporation"
    model: str  # e.g. "GA102GL [A10]"; the PCI id when the database does not know it
    memory: int | None  # bytes of dedicated memory where known
    nodes: tuple[str, ...]  # device nodes that give access to it
    pci_slot: str | None  # "0000:17:00.0"; None for platform (SoC) GPUs
    driver: str | None = None  # kernel driver: nvidia, i915, xe, amdgpu, nouveau ...
    kind: str = "other"  # nvidia | intel | amd | other (the vendor in short)
    devpath: str = ""

    @property
    def nvidia_runtime(self) -> bool:
        """Whether Docker reaches it through an NVIDIA device request (not plain nodes)."""
        return self.driver == "nvidia"

    @property
    def nvidia_minor(self) -> int | None:
        """N of /dev/nvidiaN: the id that NVIDIA_VISIBLE_DEVICES and device requests take."""
        for node in self.nodes:
            found = re.fullmatch(r"/dev/nvidia([0-9]+)", node)
            if found:
                return int(found.group(1))
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "vendor": self.vendor,
            "model": self.model,
            "memory": self.memory,
            "nodes": list(self.nodes),
            "pci_slot": self.pci_slot,
            "driver": self.driver,
        }


@dataclass(frozen=True)
class Inventory:
    devices: tuple[Device, ...] = ()  # sorted by node (then device path)
    gpus: tuple[Gpu, ...] = ()  # sorted by index
    defined_labels: frozenset[str] = BUILTIN_LABELS  # what the rules (and built-ins) can give

    @property
    def labels(self) -> frozenset[str]:
        """Every device label present on this host."""
        return frozenset(label for device in self.devices for label in device.labels)

    def nodes_for(self, label: str) -> list[str]:
        """The device nodes with `label`, sorted (devices without a node are left out)."""
        return sorted({d.node for d in self.devices if label in d.labels and d.node is not None})

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": [d.to_dict() for d in self.devices],
            "gpus": [g.to_dict() for g in self.gpus],
            "labels": sorted(self.labels),
        }


def classify(properties: Mapping[str, str], rules: Sequence[DeviceRule]) -> frozenset[str]:
    """The labels of one device: every matching rule's label, plus the built-in ``camera``."""
    labels = {rule.label for rule in rules if rule.matches(properties)}
    if (
        properties.get("SUBSYSTEM") == "video4linux"
        and ":capture:" in properties.get("ID_V4L_CAPABILITIES", "")
        and properties.get("DEVNAME")
    ):
        labels.add(CAMERA)
    return frozenset(labels)


def _node(properties: Mapping[str, str]) -> str | None:
    name = properties.get("DEVNAME")
    if not name:
        return None
    return name if name.startswith("/") else "/dev/" + name  # kernel uevents say "dri/card0"


def _pci_ids(properties: Mapping[str, str]) -> tuple[int, int] | None:
    vendor, _, model = properties.get("PCI_ID", "").partition(":")
    try:
        return int(vendor, 16), int(model, 16)
    except ValueError:
        return None


def _is_display(properties: Mapping[str, str]) -> bool:
    try:
        return int(properties.get("PCI_CLASS", ""), 16) >> 16 == _DISPLAY_CLASS
    except ValueError:
        return False


def _is_render_node(properties: Mapping[str, str]) -> bool:
    node = _node(properties) or ""
    return properties.get("SUBSYSTEM") == "drm" and node.startswith("/dev/dri/renderD")


def recognise_gpu(
    parent: Mapping[str, str], render_nodes: Sequence[str] = (), *, nvidia_minor: int = 0
) -> Gpu | None:
    """A GPU from the properties of its PCI (or platform) device and its DRM render nodes.

    NVIDIA GPUs driven by the ``nvidia`` driver are recognised by their PCI vendor id (0x10de)
    and reached through ``/dev/nvidiaN`` (N: `nvidia_minor`, unless the properties carry
    NVIDIA_DEVICE_MINOR); every other GPU needs a render node (``/dev/dri/renderD*``), so
    neither the HDMI audio function of a graphics card nor a display adapter without one (a
    server's BMC VGA) is a GPU. `index` is 0; the caller numbers the GPUs of a host.
    """
    driver = parent.get("DRIVER") or None
    memory = _int_or_none(parent.get("ATTR{mem_info_vram_total}"))
    render = tuple(sorted(render_nodes))
    if parent.get("SUBSYSTEM") == "pci":
        ids = _pci_ids(parent)
        if ids is None or not (render or _is_display(parent)):
            return None
        vendor_id, model_id = ids
        vendor, kind = _VENDORS.get(vendor_id, (f"0x{vendor_id:04x}", "other"))
        vendor = parent.get("ID_VENDOR_FROM_DATABASE") or vendor
        model = (
            parent.get("NVIDIA_MODEL")
            or parent.get("ID_MODEL_FROM_DATABASE")
            or f"{vendor_id:04x}:{model_id:04x}"
        )
        if vendor_id == 0x10DE and driver == "nvidia" and _is_display(parent):
            minor = _int_or_none(parent.get("NVIDIA_DEVICE_MINOR"))
            nodes: tuple[str, ...] = (f"/dev/nvidia{nvidia_minor if minor is None else minor}",)
            nodes += render
        elif render:
            nodes = render
        else:
            return None
        slot = parent.get("PCI_SLOT_NAME") or os.path.basename(parent.get("DEVPATH", ""))
        return Gpu(0, vendor, model, memory, nodes, slot, driver, kind, parent.get("DEVPATH", ""))
    # A platform (SoC) GPU: only its render node tells that it is one.
    name = driver or os.path.basename(parent.get("DEVPATH", "")) or "unknown"
    if not render or name in _VIRTUAL_DRM or name.startswith(tuple(_VIRTUAL_DRM)):
        return None
    model = parent.get("OF_COMPATIBLE_0") or name
    return Gpu(0, name, model, memory, render, None, driver, "other", parent.get("DEVPATH", ""))


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _parent_of(devpath: str, by_path: Mapping[str, Mapping[str, str]]) -> str | None:
    path = devpath
    while "/" in path.strip("/"):
        path = path.rsplit("/", 1)[0]
        if path in by_path:
            return path
    return None


def _recognise_gpus(by_path: Mapping[str, Mapping[str, str]]) -> tuple[Gpu, ...]:
    render: dict[str, list[str]] = {}  # parent devpath -> render nodes
    for path, props in by_path.items():
        if _is_render_node(props):
            parent = _parent_of(path, by_path)
            if parent is not None:
                render.setdefault(parent, []).append(_node(props) or "")
    nvidia = sorted(
        (props.get("PCI_SLOT_NAME", ""), path)
        for path, props in by_path.items()
        if props.get("SUBSYSTEM") == "pci"
        and props.get("DRIVER") == "nvidia"
        and _is_display(props)
        and (_pci_ids(props) or (0, 0))[0] == 0x10DE
    )
    ordinal = {path: n for n, (_, path) in enumerate(nvidia)}
    candidates = {path for path, props in by_path.items() if props.get("SUBSYSTEM") == "pci"}
    candidates |= render.keys()
    found: list[Gpu] = []
    for path in sorted(candidates):
        gpu = recognise_gpu(by_path[path], render.get(path, ()), nvidia_minor=ordinal.get(path, 0))
        if gpu is not None:
            found.append(gpu)
    found.sort(key=lambda g: (g.pci_slot is None, g.pci_slot or "", g.devpath))
    return tuple(replace(gpu, index=n) for n, gpu in enumerate(found))


def _build(by_path: Mapping[str, Mapping[str, str]], rules: Sequence[DeviceRule]) -> Inventory:
    devices: list[Device] = []
    for path, props in by_path.items():
        labels = classify(props, rules)
        if not labels:
            continue
        keys = set(_KEPT_PROPERTIES)
        keys.update(k for rule in rules if rule.label in labels for k, _ in rule.match)
        kept = tuple(sorted((k, props[k]) for k in keys if k in props))
        devices.append(Device(_node(props), props.get("SUBSYSTEM", ""), labels, kept, path))
    devices.sort(key=lambda d: (d.node is None, d.node or "", d.devpath))
    return Inventory(
        devices=tuple(devices),
        gpus=_recognise_gpus(by_path),
        defined_labels=BUILTIN_LABELS | {rule.label for rule in rules},
    )


def _by_path(property_sets: Iterable[Mapping[str, str]]) -> dict[str, Mapping[str, str]]:
    by_path: dict[str, Mapping[str, str]] = {}
    for n, props in enumerate(property_sets):
        path = props.get("DEVPATH") or f"/unknown/{n}"
        by_path[path] = MappingProxyType(dict(props))
    return by_path


def inventory_from_properties(
    property_sets: Iterable[Mapping[str, str]], rules: Sequence[DeviceRule]
) -> Inventory:
    """The inventory of a host whose udev database holds `property_sets` (pure)."""
    return _build(_by_path(property_sets), rules)


# -- hot-plug --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryState:
    """Every device's udev properties by DEVPATH, and the inventory made from them."""

    devices: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    inventory: Inventory = field(default_factory=Inventory)

    @classmethod
    def from_properties(
        cls, property_sets: Iterable[Mapping[str, str]], rules: Sequence[DeviceRule]
    ) -> InventoryState:
        by_path = _by_path(property_sets)
        return cls(MappingProxyType(by_path), _build(by_path, rules))


_GONE = frozenset({"remove"})
_PRESENT = frozenset({"add", "change", "bind", "unbind", "online", "offline", "move"})


def apply_event(
    state: InventoryState,
    action: str,
    properties: Mapping[str, str],
    rules: Sequence[DeviceRule],
) -> InventoryState:
    """The state after udev reported `action` for the device with `properties` (pure).

    ``remove`` drops the device and everything below it; ``move`` drops DEVPATH_OLD; every
    other action (add, change, bind, unbind ...) replaces the device's properties with the
    event's. An event without DEVPATH, or with an unknown action, changes nothing.
    """
    path = properties.get("DEVPATH")
    if not path or action not in _GONE | _PRESENT:
        return state
    devices = dict(state.devices)
    gone = [path] if action in _GONE else []
    if action == "move" and properties.get("DEVPATH_OLD"):
        gone.append(properties["DEVPATH_OLD"])
    for old in gone:
        for known in [p for p in devices if p == old or p.startswith(old + "/")]:
            del devices[known]
    if action in _PRESENT:
        devices[path] = MappingProxyType(dict(properties))
    return InventoryState(MappingProxyType(devices), _build(devices, rules))


# -- pyudev --------------------------------------------------------------------------------


def properties_of(device: Any) -> dict[str, str]:
    """A pyudev device's properties, plus the GPU facts that udev does not carry."""
    props = {str(k): str(v) for k, v in device.properties.items()}
    if props.get("SUBSYSTEM") != "pci" or not _is_display(props):
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


# -- what the runtime passes to Docker -------------------------------------------------------


def device_nodes_for(placement: Placement, inventory: Inventory) -> list[str]:
    """The nodes to pass into an instance with `placement` on the host of `inventory`.

    Every node of every label in ``placement.devices``; for ``gpus: N`` on a host whose GPUs
    are not driven by NVIDIA's driver, the render nodes of its first N such GPUs. NVIDIA GPUs
    are passed as device requests instead (`gpu_requests_for`).
    """
    nodes: set[str] = set()
    for label in placement.devices:
        nodes.update(inventory.nodes_for(label))
    if placement.gpus > 0:
        plain = [gpu for gpu in inventory.gpus if not gpu.nvidia_runtime]
        for gpu in plain[: placement.gpus]:
            nodes.update(gpu.nodes)
    return sorted(nodes)


def docker_devices(nodes: Iterable[str]) -> list[str]:
    """``devices=`` for the Docker SDK: each node at the same path, read, write and mknod."""
    return [f"{node}:{node}:rwm" for node in nodes]


def gpu_request(count: int, device_ids: Sequence[str] = ()) -> dict[str, Any]:
    """Keyword arguments of ``docker.types.DeviceRequest`` for `count` NVIDIA GPUs.

    With `device_ids` (the N of /dev/nvidiaN, or GPU UUIDs) those GPUs exactly; Docker gives a
    bare count the first `count` GPUs, so two instances asking for one GPU each would share
    GPU 0 — pass ids when a host runs several GPU instances.
    """
    if count < 0:
        raise ValueError(f"a GPU count must not be negative, got {count}")
    if device_ids:
        if len(device_ids) != count:
            raise ValueError(f"asked for {count} GPU(s) but named {len(device_ids)}")
        return {"driver": "nvidia", "device_ids": list(device_ids), "capabilities": [["gpu"]]}
    return {"driver": "nvidia", "count": count, "capabilities": [["gpu"]]}


def gpu_requests_for(
    placement: Placement, inventory: Inventory, device_ids: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """``device_requests=`` for an instance: one NVIDIA request, or none (no GPUs asked, or
    the host's GPUs are not NVIDIA's, whose nodes `device_nodes_for` passes instead)."""
    if placement.gpus <= 0 or not any(gpu.nvidia_runtime for gpu in inventory.gpus):
        return []
    return [gpu_request(placement.gpus, device_ids)]
