"""A labelled device node reaches the container exactly as the runtime passes it in."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import docker
import pytest

from enforcer.devices.passthrough import device_nodes_for, docker_devices
from enforcer.devices.rules import parse_rules
from enforcer.devices.watcher import scan
from enforcer.shared.spec.model import Placement
from tests.support.devices import LoopDevice, loop_device, udev_properties

pytestmark = pytest.mark.docker


@pytest.fixture()
def loop() -> Iterator[LoopDevice]:
    with loop_device() as device:
        yield device


def test_a_rule_labels_a_device_by_the_properties_udev_reports_for_it(loop: LoopDevice) -> None:
    props = udev_properties(loop.node)
    assert props["SUBSYSTEM"] == "block" and props["DEVNAME"] == loop.node
    rules = parse_rules(
        [
            {"label": "scratch-disk", "match": {"SUBSYSTEM": "block", "DEVNAME": loop.node}},
            {"label": "other-disk", "match": {"SUBSYSTEM": "tty", "DEVNAME": loop.node}},
        ]
    )
    inventory = scan(rules)
    assert device_nodes_for(Placement(devices=("scratch-disk",)), inventory) == [loop.node]
    assert device_nodes_for(Placement(devices=("other-disk",)), inventory) == []


def test_a_labelled_device_node_is_passed_into_the_container(
    loop: LoopDevice, docker_client: docker.DockerClient, test_image: str
) -> None:
    rules = parse_rules([{"label": "scratch-disk", "match": {"DEVNAME": "/dev/loop[0-9]*"}}])
    nodes = device_nodes_for(Placement(devices=("scratch-disk",)), scan(rules))
    assert loop.node in nodes
    node = loop.node
    host = os.stat(node)
    assert stat.S_ISBLK(host.st_mode)
    docker_client.images.pull(test_image)
    container = docker_client.containers.create(
        test_image,
        ["sh", "-c", f"stat -c '%F %t:%T' {node} && ls -l {node}"],
        devices=docker_devices([node]),
    )
    try:
        container.start()
        assert container.wait(timeout=60)["StatusCode"] == 0, container.logs().decode()
        first, listing = container.logs().decode().strip().splitlines()
    finally:
        container.remove(force=True)
    major, minor = os.major(host.st_rdev), os.minor(host.st_rdev)
    assert first == f"block special file {major:x}:{minor:x}"
    assert listing.startswith("b")
    assert f"{major}, {minor}" in " ".join(listing.split()).replace(" ,", ",")
    assert listing.endswith(node)
