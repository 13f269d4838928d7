"""Devices and host facts: rules, labels, GPU recognition, hot-plug, and this machine's udev."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import psutil
import pytest

from enforcer.devices.inventory import (
    Inventory,
    InventoryState,
    apply_event,
    inventory_from_properties,
    recognise_gpu,
)
from enforcer.devices.passthrough import (
    device_nodes_for,
    docker_devices,
    gpu_request,
    gpu_requests_for,
)
from enforcer.devices.rules import DeviceRule, classify, parse_rules
from enforcer.devices.watcher import DeviceWatcher, scan, scan_state
from enforcer.shared.spec.model import Placement
from enforcer.site.hostinfo import default_host_id, gather_host_info, system_labels
from tests.support.devices import udevd

DATA = Path(__file__).resolve().parent.parent / "data" / "udev"
RULES = parse_rules(
    [
        {"label": "serial-gps", "match": {"SUBSYSTEM": "tty", "ID_VENDOR_ID": "1546"}},
        {"label": "serial", "match": {"SUBSYSTEM": "tty", "ID_BUS": "usb"}},
        {"label": "webcam", "match": {"SUBSYSTEM": "video4linux", "ID_VENDOR_ID": "046d"}},
    ]
)


def recorded(name: str) -> list[dict[str, str]]:
    data = json.loads((DATA / f"{name}.json").read_text())
    assert "not captured" in data["comment"].lower()
    devices: list[dict[str, str]] = data["devices"]
    return devices


def by_name(devices: list[dict[str, str]], devname: str) -> dict[str, str]:
    return next(d for d in devices if d.get("DEVNAME") == devname)


# -- rules -----------------------------------------------------------------------------------


def test_rules_parse_into_sorted_matches_with_their_index() -> None:
    rules = parse_rules(
        [
            {
                "label": "camera",
                "match": {"SUBSYSTEM": "video4linux", "ID_V4L_CAPABILITIES": "*capture*"},
            },
            {"label": "gps", "match": {"SUBSYSTEM": "tty"}},
        ]
    )
    assert rules == [
        DeviceRule(
            "camera", (("ID_V4L_CAPABILITIES", "*capture*"), ("SUBSYSTEM", "video4linux")), 0
        ),
        DeviceRule("gps", (("SUBSYSTEM", "tty"),), 1),
    ]
    assert parse_rules([]) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            [{"label": "a", "match": {"SUBSYSTEM": "tty"}}, {"lable": "b", "match": {"X": "y"}}],
            "devices.rule[1]: unknown key 'lable' (a rule has only label and match)",
        ),
        (
            [{"label": "a", "match": {}}],
            "devices.rule[0].match: is empty and would match every device",
        ),
        ([{"label": "a"}], "devices.rule[0].match: missing"),
        ([{"label": "a", "match": "tty"}], "devices.rule[0].match: missing"),
        ([{"match": {"SUBSYSTEM": "tty"}}], "devices.rule[0].label: missing"),
        ([{"label": "", "match": {"SUBSYSTEM": "tty"}}], "devices.rule[0].label: missing"),
        (
            [{"label": "my camera", "match": {"SUBSYSTEM": "tty"}}],
            'devices.rule[0].label: "my camera" is not a label',
        ),
        (
            [{"label": "gps", "match": {"ID_VENDOR_ID": 1546}}],
            'devices.rule[0].match.ID_VENDOR_ID: 1546 is not text; quote it: "1546"',
        ),
        (["tty"], "devices.rule[0]: must be a table with label and match"),
        ({"label": "a"}, "devices.rule: must be an array of tables"),
    ],
    ids=["unknown-key", "empty-match", "no-match", "match-not-table", "no-label", "empty-label",
         "bad-label", "number", "not-a-table", "not-an-array"],
)  # fmt: skip
def test_bad_rules_are_refused_with_the_rule_index(raw: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_rules(raw)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("tty", "tty", True),
        ("tty", "TTY", False),  # case-sensitive
        ("*capture*", ":capture:", True),
        ("*capture*", ":video_output:", False),
        ("/dev/ttyUSB[0-9]", "/dev/ttyUSB3", True),
        ("/dev/ttyUSB[0-9]", "/dev/ttyUSB10", False),
        ("/dev/loop?", "/dev/loop7", True),
        ("[!0]*", "1546", True),
    ],
)
def test_rules_match_properties_with_shell_globs(pattern: str, value: str, matches: bool) -> None:
    rule = parse_rules([{"label": "x", "match": {"P": pattern}}])[0]
    assert rule.matches({"P": value}) is matches
    assert not rule.matches({"OTHER": value})  # a missing property never matches


def test_a_device_gets_every_matching_label_and_the_builtin_camera() -> None:
    devices = recorded("intel-n100-edge")
    assert classify(by_name(devices, "/dev/video0"), RULES) == {"camera", "webcam"}
    assert classify(by_name(devices, "/dev/video1"), RULES) == {"webcam"}  # metadata node
    assert classify(by_name(devices, "/dev/ttyUSB0"), RULES) == {"serial"}
    assert classify(by_name(devices, "/dev/sda"), RULES) == frozenset()
    gps = recorded("nvidia-a10-server")
    assert classify(by_name(gps, "/dev/ttyACM0"), RULES) == {"serial", "serial-gps"}


# -- inventories from recorded udev databases ------------------------------------------------


def test_intel_edge_box_has_a_render_node_gpu_a_camera_and_a_serial_port() -> None:
    inventory = inventory_from_properties(recorded("intel-n100-edge"), RULES)
    assert inventory.labels == {"camera", "webcam", "serial"}
    assert inventory.nodes_for("camera") == ["/dev/video0"]
    assert inventory.nodes_for("webcam") == ["/dev/video0", "/dev/video1"]
    assert inventory.nodes_for("serial") == ["/dev/ttyUSB0"]
    assert inventory.nodes_for("gps") == []
    (gpu,) = inventory.gpus
    assert (gpu.index, gpu.vendor, gpu.model, gpu.kind) == (
        0, "Intel Corporation", "Alder Lake-N [UHD Graphics]", "intel"
    )  # fmt: skip
    assert (gpu.nodes, gpu.pci_slot, gpu.driver, gpu.memory) == (
        ("/dev/dri/renderD128",), "0000:00:02.0", "i915", None
    )  # fmt: skip
    assert not gpu.nvidia_runtime and gpu.nvidia_minor is None
    camera = next(d for d in inventory.devices if d.node == "/dev/video0")
    kept = dict(camera.properties)
    assert kept["ID_V4L_PRODUCT"] == "HD Pro Webcam C920" and kept["ID_SERIAL_SHORT"] == "A1B2C3D4"
    assert "DEVLINKS" not in kept and "USEC_INITIALIZED" not in kept
    assert inventory.defined_labels == {"camera", "serial-gps", "serial", "webcam"}


def test_nvidia_gpus_are_found_by_pci_vendor_and_reached_through_dev_nvidia() -> None:
    inventory = inventory_from_properties(recorded("nvidia-a10-server"), RULES)
    assert [(g.index, g.pci_slot, g.nodes) for g in inventory.gpus] == [
        (0, "0000:17:00.0", ("/dev/nvidia0",)),
        (1, "0000:65:00.0", ("/dev/nvidia1",)),
    ]
    for gpu in inventory.gpus:
        assert (gpu.vendor, gpu.model, gpu.kind, gpu.memory) == (
            "NVIDIA Corporation", "GA102GL [A10]", "nvidia", None
        )  # fmt: skip
        assert gpu.nvidia_runtime and gpu.nvidia_minor == gpu.index
    # The BMC's ASPEED VGA has a DRM card node but no render node: no GPU.
    assert all(g.driver == "nvidia" for g in inventory.gpus)
    assert inventory.nodes_for("serial-gps") == ["/dev/ttyACM0"]


def test_the_nvidia_driver_minor_numbers_win_over_pci_order() -> None:
    devices = recorded("nvidia-a10-server")
    for props in devices:
        if props.get("PCI_SLOT_NAME") == "0000:17:00.0":
            props.update(NVIDIA_DEVICE_MINOR="1", NVIDIA_MODEL="NVIDIA A10")
        elif props.get("PCI_SLOT_NAME") == "0000:65:00.0":
            props["NVIDIA_DEVICE_MINOR"] = "0"
    gpus = inventory_from_properties(devices, []).gpus
    assert [(g.pci_slot, g.nodes, g.model) for g in gpus] == [
        ("0000:17:00.0", ("/dev/nvidia1",), "NVIDIA A10"),
        ("0000:65:00.0", ("/dev/nvidia0",), "GA102GL [A10]"),
    ]


def test_amd_gpus_report_their_memory_and_leave_out_audio_and_virtual_render_nodes() -> None:
    inventory = inventory_from_properties(recorded("amd-radeon-workstation"), [])
    assert [(g.index, g.pci_slot, g.nodes, g.memory, g.kind) for g in inventory.gpus] == [
        (0, "0000:03:00.0", ("/dev/dri/renderD128",), 17163091968, "amd"),
        (1, "0000:0a:00.0", ("/dev/dri/renderD129",), 512 * 1024**2, "amd"),
    ]
    assert inventory.gpus[0].model == "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]"
    assert inventory.gpus[0].vendor == "Advanced Micro Devices, Inc. [AMD/ATI]"
    assert inventory.devices == ()


def test_a_hybrid_laptop_has_one_intel_and_one_nvidia_gpu_with_its_render_node() -> None:
    inventory = inventory_from_properties(recorded("hybrid-laptop"), [])
    intel, nvidia = inventory.gpus
    assert (intel.index, intel.kind, intel.nodes) == (0, "intel", ("/dev/dri/renderD128",))
    assert (nvidia.index, nvidia.kind) == (1, "nvidia")
    assert nvidia.nodes == ("/dev/nvidia0", "/dev/dri/renderD129")
    assert nvidia.nvidia_minor == 0  # first NVIDIA GPU, though the host's second GPU
    assert nvidia.model == "TU117M [GeForce GTX 1650 Mobile / Max-Q]"


def pci(pci_id: str, pci_class: str, driver: str | None = None) -> dict[str, str]:
    props = {"SUBSYSTEM": "pci", "PCI_ID": pci_id, "PCI_CLASS": pci_class}
    return props if driver is None else {**props, "DRIVER": driver}


RENDER = ("/dev/dri/renderD128",)
MALI = {
    "SUBSYSTEM": "platform",
    "DEVPATH": "/devices/platform/fde60000.gpu",
    "DRIVER": "panfrost",
    "OF_COMPATIBLE_0": "rockchip,rk3568-mali",
}


@pytest.mark.parametrize(
    ("parent", "render", "is_gpu"),
    [
        (pci("10DE:2236", "30200", "nvidia"), (), True),
        (pci("10DE:2236", "30200", "vfio-pci"), (), False),
        (pci("10DE:2236", "30200"), (), False),
        (pci("10DE:1F91", "30000", "nouveau"), RENDER, True),
        (pci("10DE:10FA", "40300", "nvidia"), (), False),
        (pci("1A03:2000", "30000", "ast"), (), False),
        (pci("8086:46D1", "30000", "i915"), RENDER, True),
        (MALI, RENDER, True),
        ({"SUBSYSTEM": "platform", "DEVPATH": "/devices/platform/vgem"}, RENDER, False),
        (pci("garbage", "30000"), RENDER, False),
    ],
    ids=["nvidia", "nvidia-vfio", "nvidia-no-driver", "nouveau", "nvidia-audio", "bmc-vga", "intel",
         "soc-mali", "vgem", "bad-pci-id"],
)  # fmt: skip
def test_gpu_recognition(parent: dict[str, str], render: tuple[str, ...], is_gpu: bool) -> None:
    assert (recognise_gpu(parent, render) is not None) is is_gpu


def test_a_soc_gpu_is_named_after_its_driver_and_compatible_string() -> None:
    gpu = recognise_gpu(MALI, RENDER)
    assert gpu is not None
    assert (gpu.vendor, gpu.model, gpu.pci_slot, gpu.kind) == (
        "panfrost", "rockchip,rk3568-mali", None, "other"
    )  # fmt: skip


# -- what the runtime passes to Docker -------------------------------------------------------


def test_device_nodes_for_an_instance_are_its_labelled_nodes_and_plain_gpu_nodes() -> None:
    intel = inventory_from_properties(recorded("intel-n100-edge"), RULES)
    assert device_nodes_for(Placement(devices=("camera",)), intel) == ["/dev/video0"]
    assert device_nodes_for(Placement(devices=("webcam", "serial"), gpus=1), intel) == [
        "/dev/dri/renderD128", "/dev/ttyUSB0", "/dev/video0", "/dev/video1",
    ]  # fmt: skip
    assert gpu_requests_for(Placement(gpus=1), intel) == []
    assert docker_devices(["/dev/video0"]) == ["/dev/video0:/dev/video0:rwm"]


def test_nvidia_gpus_become_docker_device_requests() -> None:
    server = inventory_from_properties(recorded("nvidia-a10-server"), RULES)
    assert device_nodes_for(Placement(gpus=2), server) == []
    (request,) = gpu_requests_for(Placement(gpus=2), server)
    assert request == {"driver": "nvidia", "count": 2, "capabilities": [["gpu"]]}
    assert docker.types.DeviceRequest(**request) == {
        "Driver": "nvidia", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {},
    }  # fmt: skip
    pinned = gpu_request(1, ["1"])
    assert docker.types.DeviceRequest(**pinned)["DeviceIDs"] == ["1"]
    assert gpu_requests_for(Placement(gpus=0), server) == []
    with pytest.raises(ValueError, match="negative"):
        gpu_request(-1)
    with pytest.raises(ValueError, match="named 1"):
        gpu_request(2, ["0"])


# -- hot-plug --------------------------------------------------------------------------------


def test_hot_plug_events_go_through_the_watcher_and_report_changes() -> None:
    devices = recorded("intel-n100-edge")
    camera = [d for d in devices if d.get("SUBSYSTEM") == "video4linux"]
    watcher_changes: list[Inventory] = []
    watcher = DeviceWatcher(RULES, watcher_changes.append)
    watcher.state = InventoryState.from_properties([d for d in devices if d not in camera], RULES)
    assert "camera" not in watcher.inventory.labels
    for props in camera:
        watcher.handle_event("add", props)
    assert watcher.inventory.nodes_for("camera") == ["/dev/video0"]
    assert len(watcher_changes) == 2 and watcher_changes[-1] == watcher.inventory
    watcher.handle_event("change", by_name(devices, "/dev/sda"))  # nothing labelled changed
    assert len(watcher_changes) == 2
    watcher.handle_event("remove", {"DEVPATH": camera[0]["DEVPATH"], "SUBSYSTEM": "video4linux"})
    assert "camera" not in watcher.inventory.labels
    assert watcher.inventory.nodes_for("webcam") == ["/dev/video1"]
    assert len(watcher_changes) == 3


def test_removing_a_gpu_removes_its_render_nodes_with_it() -> None:
    devices = recorded("amd-radeon-workstation")
    state = InventoryState.from_properties(devices, [])
    dgpu = next(d for d in devices if d.get("PCI_SLOT_NAME") == "0000:03:00.0")
    after = apply_event(state, "remove", {"DEVPATH": dgpu["DEVPATH"]}, [])
    assert [g.pci_slot for g in after.inventory.gpus] == ["0000:0a:00.0"]
    assert after.inventory.gpus[0].index == 0
    assert not any(p.startswith(dgpu["DEVPATH"] + "/") for p in after.devices)
    assert len(state.inventory.gpus) == 2  # the old state is untouched
    back = apply_event(after, "add", dgpu, [])
    back = apply_event(back, "add", by_name(devices, "/dev/dri/renderD128"), [])
    assert back.inventory == state.inventory


def test_unbinding_the_nvidia_driver_takes_the_gpu_away() -> None:
    devices = recorded("nvidia-a10-server")
    state = InventoryState.from_properties(devices, [])
    gpu = next(d for d in devices if d.get("PCI_SLOT_NAME") == "0000:65:00.0")
    unbound = {k: v for k, v in gpu.items() if k != "DRIVER"}
    after = apply_event(state, "unbind", unbound, [])
    assert [g.pci_slot for g in after.inventory.gpus] == ["0000:17:00.0"]
    rebound = apply_event(after, "bind", gpu, [])
    assert rebound.inventory == state.inventory


def test_odd_events_change_nothing_and_moves_follow_the_device() -> None:
    devices = recorded("intel-n100-edge")
    state = InventoryState.from_properties(devices, RULES)
    assert apply_event(state, "add", {"SUBSYSTEM": "tty"}, RULES) is state  # no DEVPATH
    assert apply_event(state, "frobnicate", devices[0], RULES) is state
    serial = dict(by_name(devices, "/dev/ttyUSB0"))
    moved = {**serial, "DEVPATH_OLD": serial["DEVPATH"], "DEVPATH": serial["DEVPATH"] + "-new"}
    after = apply_event(state, "move", moved, RULES)
    assert after.inventory.nodes_for("serial") == ["/dev/ttyUSB0"]
    assert serial["DEVPATH"] not in after.devices


def test_an_async_on_change_runs_as_a_task() -> None:
    seen: list[frozenset[str]] = []

    async def on_change(inventory: Inventory) -> None:
        seen.append(inventory.labels)

    async def main() -> None:
        watcher = DeviceWatcher(RULES, on_change)
        watcher.handle_event("add", by_name(recorded("intel-n100-edge"), "/dev/ttyUSB0"))
        await asyncio.sleep(0)
        await watcher.stop()

    asyncio.run(main())
    assert seen == [frozenset({"serial"})]


# -- this machine's udev database ------------------------------------------------------------


def sys_nodes(klass: str, prefix: str) -> dict[str, str]:
    """`/dev/<name>` -> "major:minor" for the devices of a /sys/class that exist in /dev."""
    root = Path("/sys/class") / klass
    found = {}
    if root.is_dir():
        for entry in root.iterdir():
            dev = entry / "dev"
            node = Path("/dev") / entry.name
            if entry.name.startswith(prefix) and dev.exists() and node.exists():
                found[str(node)] = dev.read_text().strip()
    return found


def test_scan_reads_this_machines_udev_database() -> None:
    rules = parse_rules(
        [
            {"label": "null", "match": {"SUBSYSTEM": "mem", "DEVNAME": "/dev/null"}},
            {"label": "loop", "match": {"SUBSYSTEM": "block", "DEVNAME": "/dev/loop[0-9]*"}},
            {"label": "vt", "match": {"SUBSYSTEM": "tty", "DEVNAME": "/dev/tty[0-9]*"}},
            {"label": "nothing", "match": {"SUBSYSTEM": "no-such-subsystem"}},
        ]
    )
    # other tests of the suite (on the other worker) make and remove loop devices meanwhile:
    # what /sys lists before and after the scan bounds what the scan may have seen
    before = {k: sys_nodes(k, p) for k, p in (("block", "loop"), ("tty", "tty"))}
    inventory = scan(rules)
    after = {k: sys_nodes(k, p) for k, p in (("block", "loop"), ("tty", "tty"))}
    assert inventory.nodes_for("null") == ["/dev/null"]
    null = next(d for d in inventory.devices if d.node == "/dev/null")
    assert (dict(null.properties)["MAJOR"], dict(null.properties)["MINOR"]) == ("1", "3")
    assert inventory.nodes_for("nothing") == []
    for label, klass, prefix in (("loop", "block", "loop"), ("vt", "tty", "tty")):

        def numbered(nodes: dict[str, str], prefix: str = prefix) -> dict[str, str]:
            return {n: v for n, v in nodes.items() if n[len("/dev/" + prefix) :].isdigit()}

        stayed = numbered(before[klass]).items() & numbered(after[klass]).items()
        seen_at_all = numbered(before[klass]) | numbered(after[klass])
        found = set(inventory.nodes_for(label))
        assert {node for node, _ in stayed} <= found <= set(seen_at_all)
        for device in inventory.devices:
            if label in device.labels and device.node in dict(stayed):
                props = dict(device.properties)
                assert f"{props['MAJOR']}:{props['MINOR']}" == dict(stayed)[device.node]
                mode = os.stat(device.node).st_mode
                assert stat.S_ISBLK(mode) if klass == "block" else stat.S_ISCHR(mode)


def test_the_real_scan_and_the_pure_inventory_agree() -> None:
    state = scan_state(RULES)
    assert inventory_from_properties(state.devices.values(), RULES) == state.inventory
    assert all(props.get("DEVPATH") == path for path, props in state.devices.items())


def test_the_watcher_keeps_the_startup_inventory_when_udevd_is_absent(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    rules = parse_rules([{"label": "null", "match": {"DEVNAME": "/dev/null"}}])

    async def main() -> tuple[Inventory, bool]:
        watcher = DeviceWatcher(
            rules, lambda inventory: None, udev_control=str(tmp_path / "x"), kernel_fallback=False
        )
        inventory = await watcher.start()
        monitoring = watcher.monitoring
        await watcher.stop()
        return inventory, monitoring

    with caplog.at_level(logging.WARNING, logger="enforcer.devices.watcher"):
        inventory, monitoring = asyncio.run(main())
    assert inventory.nodes_for("null") == ["/dev/null"]
    assert not monitoring
    assert "hot-plug is not followed" in caplog.text


def test_without_udevd_the_watcher_follows_real_kernel_uevents(tmp_path: Path) -> None:
    """A synthetic uevent on a real loop device travels netlink -> monitor -> inventory."""
    loops = sorted(sys_nodes("block", "loop"))
    uevent = Path("/sys/class/block") / os.path.basename(loops[0]) / "uevent" if loops else None
    if uevent is None or not os.access(uevent, os.W_OK):
        pytest.skip("needs a loop device whose uevent file this user may write (root)")
    rules = parse_rules(
        [{"label": "poked", "match": {"SUBSYSTEM": "block", "SYNTH_ARG_EDGEWARD": "poked"}}]
    )

    async def main() -> list[list[str]]:
        changes: asyncio.Queue[Inventory] = asyncio.Queue()
        watcher = DeviceWatcher(rules, changes.put_nowait, udev_control=str(tmp_path / "x"))
        await watcher.start()
        seen = [watcher.inventory.nodes_for("poked")]
        try:
            assert watcher.monitoring and watcher.source == "kernel"
            uevent.write_text("change 2f5b8a42-9a53-4bb5-8b0b-1b6c1fd3c2a1 EDGEWARD=poked")
            seen.append((await asyncio.wait_for(changes.get(), 10)).nodes_for("poked"))
            uevent.write_text("change")
            seen.append((await asyncio.wait_for(changes.get(), 10)).nodes_for("poked"))
        finally:
            await watcher.stop()
        return seen

    assert asyncio.run(main()) == [[], [loops[0]], []]


def test_the_watcher_follows_udev_where_udevd_runs() -> None:

    async def main() -> str | None:
        watcher = DeviceWatcher([], lambda inventory: None)
        await watcher.start()
        source = watcher.source
        await watcher.stop()
        return source

    with udevd():
        assert asyncio.run(main()) == "udev"


# -- host facts ------------------------------------------------------------------------------


def test_host_info_has_config_labels_system_labels_and_capacity() -> None:
    inventory = inventory_from_properties(recorded("nvidia-a10-server"), RULES)
    info = gather_host_info("host-a", {"zone": "line-1"}, inventory)
    labels: Mapping[str, str] = info.label_map
    assert labels["zone"] == "line-1"
    assert labels["system/hostname"] == socket.gethostname()
    assert labels["system/os"] == "linux"
    assert labels["system/arch"] == {"x86_64": "amd64", "aarch64": "arm64"}.get(
        platform.machine(), platform.machine()
    )
    assert labels["system/gpu"] == "nvidia"
    assert list(info.labels) == sorted(info.labels)
    assert info.cpus == psutil.cpu_count() and info.memory == psutil.virtual_memory().total
    plain = gather_host_info("host-a", {}, Inventory())
    assert "system/gpu" not in plain.label_map


@pytest.mark.parametrize(
    ("recording", "gpu"),
    [("intel-n100-edge", "intel"), ("amd-radeon-workstation", "amd"), ("hybrid-laptop", "mixed")],
)
def test_the_gpu_system_label_names_the_vendor(recording: str, gpu: str) -> None:
    inventory = inventory_from_properties(recorded(recording), [])
    assert system_labels(inventory, hostname="h")["system/gpu"] == gpu


def test_config_may_not_set_system_labels() -> None:
    with pytest.raises(ValueError, match='"system/os" is reserved'):
        gather_host_info("h", {"system/os": "plan9"}, Inventory())


def test_the_host_id_is_the_machine_id_else_the_hostname(tmp_path: Path) -> None:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    assert default_host_id(str(machine_id)) == "3d1219c7c4c5404aaa1f6d2a48adfda4"
    short = socket.gethostname().split(".")[0]
    machine_id.write_text("\n")
    assert default_host_id(str(machine_id)) == short
    assert default_host_id(str(tmp_path / "missing")) == short
