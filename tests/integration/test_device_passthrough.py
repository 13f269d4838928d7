"""A labelled device node reaches the container exactly as the runtime passes it in."""

from __future__ import annotations

import os
import stat

import docker
import pytest

from enforcer.devices.udev import device_nodes_for, docker_devices, parse_rules, scan
from enforcer.shared.spec.model import Placement

pytestmark = pytest.mark.docker

RULES = parse_rules(
    [
        {"label": "scratch-disk", "match": {"SUBSYSTEM": "block", "DEVNAME": "/dev/loop[0-9]*"}},
        {"label": "serial", "match": {"SUBSYSTEM": "tty", "DEVNAME": "/dev/ttyS[0-9]*"}},
    ]
)


def labelled_node() -> tuple[str, str]:
    """A real block (loop) or char (serial) node that a rule labels on this machine."""
    inventory = scan(RULES)
    for label in ("scratch-disk", "serial"):
        nodes = device_nodes_for(Placement(devices=(label,)), inventory)
        if nodes:
            return label, nodes[0]
    pytest.skip("no loop device and no serial port on this machine")


def test_a_labelled_device_node_is_passed_into_the_container(
    docker_client: docker.DockerClient, test_image: str
) -> None:
    label, node = labelled_node()
    host = os.stat(node)
    kind = "block special file" if stat.S_ISBLK(host.st_mode) else "character special file"
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
    assert first == f"{kind} {major:x}:{minor:x}", label
    assert listing.startswith("b" if kind.startswith("block") else "c")
    assert f"{major}, {minor}" in " ".join(listing.split()).replace(" ,", ",")
    assert listing.endswith(node)
