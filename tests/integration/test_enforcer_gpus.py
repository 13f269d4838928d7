"""GPUs are assigned, not counted, through a real enforcer and engine: two instances asking
for one GPU each get device requests for different NVIDIA GPUs, `ps` shows which, and an
enforcer restart keeps the assignment.

This machine has no GPU, so the enforcer is given the recorded udev database of a server with
two NVIDIA A10 (tests/data/udev) in place of the scan; everything after the scan is real: the
scheduler, the site store, the Docker containers created with their device requests (which the
engine cannot start without NVIDIA's runtime, and keeps as created)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from enforcer.devices.inventory import Inventory
from enforcer.devices.watcher import DeviceWatcher
from tests.support.apps import app, sleeper
from tests.support.engines import DockerEngine
from tests.support.livedaemon import LiveDaemon

DATA = Path(__file__).resolve().parent.parent / "data" / "udev"
A10 = ["0000:17:00.0", "0000:65:00.0"]


@pytest.fixture()
def live(engine: DockerEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveDaemon]:
    devices = json.loads((DATA / "nvidia-a10-server.json").read_text())["devices"]

    async def scan(self: DeviceWatcher) -> Inventory:
        self.state = self.state.from_properties(devices, self.rules)
        return self.inventory

    monkeypatch.setattr(DeviceWatcher, "start", scan)
    root = Path(tempfile.mkdtemp(prefix="gpu-", dir="/tmp"))
    d = LiveDaemon(root, engine.url)
    d.start()
    yield d
    try:
        for name in sorted({i["app"] for i in d.ps().values()}):
            d.cli("rm", name, "--purge")
    finally:
        d.stop()
        d.remove_firewall()
        shutil.rmtree(root, ignore_errors=True)


def wait_for(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def device_ids(client: docker.DockerClient, instance: str) -> list[str] | None:
    """The NVIDIA device ids of the instance's container, as the engine holds them."""
    try:
        attrs = client.api.inspect_container(f"ew.{instance}.main")
    except docker.errors.NotFound:
        return None
    requests = attrs["HostConfig"].get("DeviceRequests") or []
    return [i for r in requests if r.get("Driver") == "nvidia" for i in r.get("DeviceIDs") or []]


def gpu_app(name: str, test_image: str) -> dict[str, Any]:
    return app(name, sleeper("work", test_image, placement={"gpus": 1}))


def test_two_gpu_instances_get_different_gpus_shown_in_ps_and_kept_across_a_restart(
    live: LiveDaemon, docker_client: docker.DockerClient, test_image: str
) -> None:
    # "zeta" comes first and gets GPU 0; "alpha", applied later, gets GPU 1 although a fresh
    # schedule would give it GPU 0 (it sorts first): the restart must not swap them
    live.apply(gpu_app("zeta", test_image))
    assert wait_for(lambda: device_ids(docker_client, "zeta.work.0")) == ["0"]
    live.apply(gpu_app("alpha", test_image))
    assert wait_for(lambda: device_ids(docker_client, "alpha.work.0")) == ["1"]
    assert device_ids(docker_client, "zeta.work.0") == ["0"]
    ps = live.ps()
    assert ps["zeta.work.0"]["gpus"] == [A10[0]]
    assert ps["alpha.work.0"]["gpus"] == [A10[1]]

    live.stop()
    live.start()
    ps = live.wait_ps(lambda ps: bool(ps.get("alpha.work.0", {}).get("gpus")))
    assert ps["zeta.work.0"]["gpus"] == [A10[0]]
    assert ps["alpha.work.0"]["gpus"] == [A10[1]]
    # the engine cannot start them here, so the enforcer may be creating them again
    assert wait_for(lambda: device_ids(docker_client, "zeta.work.0")) == ["0"]
    assert wait_for(lambda: device_ids(docker_client, "alpha.work.0")) == ["1"]
