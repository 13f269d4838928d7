"""Placement by devices through a real enforcer: nodes passed in, or pending with a reason;
devices that appear and disappear (a real kernel hot-plug) place and stop instances."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.support.apps import app, sleeper
from tests.support.devices import LoopDevice, loop_device
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine
from tests.support.processes import wait_for


def rule(label: str, node: str) -> str:
    return f'[[devices.rule]]\nlabel = "{label}"\nmatch = {{ SUBSYSTEM = "block", DEVNAME = "{node}" }}\n'


@contextlib.contextmanager
def enforcer_with(engine: DockerEngine, config: str, **labels: str) -> Iterator[EnforcerProc]:
    root = Path(tempfile.mkdtemp(prefix="enf-", dir="/tmp"))
    proc = EnforcerProc(root, engine.url, extra_config=config, host_labels=labels)
    proc.start()
    try:
        yield proc
    finally:
        for name in proc.app_names():
            proc.cli("rm", name)
        proc.stop()
        proc.remove_firewall()
        shutil.rmtree(root, ignore_errors=True)


def device_in(client: docker.DockerClient, container: str, node: str) -> str:
    code, out = client.containers.get(container).exec_run(["stat", "-c", "%F %t:%T", node])
    return out.decode().strip() if code == 0 and isinstance(out, bytes) else ""


def on_host(node: str) -> str:
    rdev = os.stat(node).st_rdev
    assert stat.S_ISBLK(os.stat(node).st_mode)
    return f"block special file {os.major(rdev):x}:{os.minor(rdev):x}"


@pytest.fixture()
def loop() -> Iterator[LoopDevice]:
    with loop_device() as device:
        yield device


def test_devices_are_discovered_passed_in_and_missing_ones_leave_the_instance_pending(
    engine: DockerEngine, loop: LoopDevice, docker_client: docker.DockerClient, test_image: str
) -> None:
    with enforcer_with(engine, rule("scratch-disk", loop.node), zone="line-1") as enf:
        host = json.loads(enf.cli("devices", "-o", "json").stdout)
        assert loop.node in json.dumps(host)
        assert "scratch-disk" in json.dumps(host)

        enf.apply(app("disk", sleeper("s", test_image, placement={"devices": ["scratch-disk"]})))
        enf.apply(app("cam", sleeper("s", test_image, placement={"devices": ["camera"]})))
        enf.apply(
            app("zoned", sleeper("s", test_image, placement={"match-host-labels": "zone = line-2"}))
        )
        enf.wait_running("disk.s.0")
        assert device_in(docker_client, "ew.disk.s.0.main", loop.node) == on_host(loop.node)

        ps = enf.wait_ps(lambda p: "cam.s.0" in p and "zoned.s.0" in p)
        assert ps["cam.s.0"]["state"] == "pending"
        assert "no device labelled camera" in ps["cam.s.0"]["reason"]
        assert ps["zoned.s.0"]["state"] == "pending"
        assert 'labels do not match "zone = line-2"' in ps["zoned.s.0"]["reason"]
        assert not docker_client.containers.list(all=True, filters={"label": "edgeward.app=cam"})


def test_a_device_plugged_in_places_its_instance_and_unplugging_it_stops_the_instance(
    engine: DockerEngine, docker_client: docker.DockerClient, test_image: str
) -> None:
    with (
        loop_device(added=False) as loop,
        enforcer_with(engine, rule("hotplug-disk", loop.node)) as enf,
    ):
        enf.apply(app("disk", sleeper("s", test_image, placement={"devices": ["hotplug-disk"]})))
        ps = enf.wait_ps(lambda p: p.get("disk.s.0", {}).get("state") == "pending")
        assert "no device labelled hotplug-disk" in ps["disk.s.0"]["reason"]

        loop.add()  # the kernel's `add` uevent: /dev/loopN appears
        enf.wait_running("disk.s.0", timeout=20)
        assert device_in(docker_client, "ew.disk.s.0.main", loop.node) == on_host(loop.node)

        loop.remove()  # the kernel's `remove` uevent: /dev/loopN is gone
        ps = enf.wait_ps(lambda p: p.get("disk.s.0", {}).get("state") == "pending", timeout=20)
        assert "no device labelled hotplug-disk" in ps["disk.s.0"]["reason"]
        running: dict[str, str | list[str] | bool] = {
            "label": "edgeward.app=disk",
            "status": "running",
        }
        wait_for(lambda: not docker_client.containers.list(filters=running), 20, "disk stopped")
