"""Placement by devices through a real enforcer: nodes passed in, or pending with a reason."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.enforcerproc import EnforcerProc
from tests.integration.apps import app, sleeper
from tests.realparts import DockerEngine

RULES = """
[[devices.rule]]
label = "scratch-disk"
match = { SUBSYSTEM = "block", DEVNAME = "/dev/loop0" }
"""


@pytest.fixture()
def device_enforcer(engine: DockerEngine) -> Iterator[EnforcerProc]:
    if not Path("/dev/loop0").exists():
        pytest.skip("this machine has no /dev/loop0 to label")
    root = Path(tempfile.mkdtemp(prefix="enf-", dir="/tmp"))
    proc = EnforcerProc(root, engine.url, extra_config=RULES, host_labels={"zone": "line-1"})
    proc.start()
    yield proc
    for name in ("cam", "disk", "zoned"):
        proc.cli("rm", name)
    proc.stop()
    proc.remove_firewall()
    shutil.rmtree(root, ignore_errors=True)


def test_devices_are_discovered_passed_in_and_missing_ones_leave_the_instance_pending(
    device_enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    enf = device_enforcer
    host = json.loads(enf.cli("devices", "-o", "json").stdout)
    assert "/dev/loop0" in json.dumps(host)
    assert "scratch-disk" in json.dumps(host)

    enf.apply(app("disk", sleeper("s", test_image, placement={"devices": ["scratch-disk"]})))
    enf.apply(app("cam", sleeper("s", test_image, placement={"devices": ["camera"]})))
    enf.apply(
        app("zoned", sleeper("s", test_image, placement={"match-host-labels": "zone = line-2"}))
    )
    enf.wait_running("disk.s.0")
    _, out = docker_client.containers.get("ew.disk.s.0.main").exec_run(
        ["stat", "-c", "%F %t:%T", "/dev/loop0"]
    )
    rdev = os.stat("/dev/loop0").st_rdev
    assert stat.S_ISBLK(os.stat("/dev/loop0").st_mode)
    assert out.decode().strip() == f"block special file {os.major(rdev):x}:{os.minor(rdev):x}"

    ps = enf.wait_ps(lambda p: "cam.s.0" in p and "zoned.s.0" in p)
    assert ps["cam.s.0"]["state"] == "pending"
    assert "no device labelled camera" in ps["cam.s.0"]["reason"]
    assert ps["zoned.s.0"]["state"] == "pending"
    assert 'labels do not match "zone = line-2"' in ps["zoned.s.0"]["reason"]
    assert not docker_client.containers.list(all=True, filters={"label": "edgeward.app=cam"})
