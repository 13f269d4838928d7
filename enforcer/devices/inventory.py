"""The devices of a host as udev describes them (DESIGN.md, "Devices"), pure.

`inventory_from_properties` turns udev property sets (a scan of the udev database, or recorded
ones in tests) into an `Inventory`: the labelled devices (`enforcer.devices.rules`) and the
GPUs, which `recognise_gpu` tells from a PCI or platform device and its DRM render nodes.
`apply_event` applies one hot-plug event to an `InventoryState`; the watcher
(`enforcer.devices.watcher`) feeds it from pyudev.

Besides udev's own properties, the watcher adds a few that udev does not know:
``ATTR{mem_info_vram_total}`` (amdgpu's VRAM size, from sysfs) and ``NVIDIA_DEVICE_MINOR`` /
``NVIDIA_MODEL`` (from /proc/driver/nvidia/gpus/<slot>/information).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from enforcer.devices.rules import BUILTIN_LABELS, DeviceRule, classify

__all__ = [
    "Device",
    "Gpu",
    "Inventory",
    "InventoryState",
    "apply_event",
    "inventory_from_properties",
    "is_display",
    "recognise_gpu",
]

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
    def id(self) -> str:
        """A name that stays while the GPU does (its index may not, when another one goes):
        the PCI slot, or the device path of a platform GPU."""
        return self.pci_slot or self.devpath or str(self.index)

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
            "id": self.id,
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


def is_display(properties: Mapping[str, str]) -> bool:
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
        if ids is None or not (render or is_display(parent)):
            return None
        vendor_id, model_id = ids
        vendor, kind = _VENDORS.get(vendor_id, (f"0x{vendor_id:04x}", "other"))
        vendor = parent.get("ID_VENDOR_FROM_DATABASE") or vendor
        model = (
            parent.get("NVIDIA_MODEL")
            or parent.get("ID_MODEL_FROM_DATABASE")
            or f"{vendor_id:04x}:{model_id:04x}"
        )
        if vendor_id == 0x10DE and driver == "nvidia" and is_display(parent):
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
        and is_display(props)
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
