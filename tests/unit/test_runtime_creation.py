"""The engine's create arguments for one container, made without an engine."""

from __future__ import annotations

from dataclasses import replace

from enforcer.reconcile.instances import ContainerConfig, MountConfig, PortConfig
from enforcer.runtime.creation import create_args, host_config_args
from enforcer.shared.spec.model import RestartPolicy

OWNER = ContainerConfig(
    instance="shop.web.0",
    name="main",
    docker_name="edgeward-shop.web.0-main",
    image="reg/web:1",
    command=("serve",),
    entrypoint=None,
    env=(("MODE", "prod"),),
    labels=(("edgeward.managed", "true"),),
    mounts=(MountConfig("volume", "shop-data", "/data"),),
    devices=("/dev/video0",),
    gpus=1,
    cpus=0.5,
    memory=64 * 1024 * 1024,
    network="edgeward-shop",
    owner=True,
    aliases=("web",),
    ports=(PortConfig(8080, 18080, "tcp"),),
    hostname="web-0",
    restart=RestartPolicy.ALWAYS,
    stop_timeout=7,
    files_digest="",
    gpu_ids=("GPU-1",),
)
LOGS = {"Type": "local", "Config": {"max-size": "10m"}}


def test_the_owner_holds_the_network_ports_dns_limits_and_devices() -> None:
    args = host_config_args(OWNER, None, LOGS, {"edgeward-shop": "10.1.0.1"})
    assert args["network_mode"] == "edgeward-shop"
    assert args["dns"] == ["10.1.0.1"]
    assert args["port_bindings"] == {"8080/tcp": ("0.0.0.0", 18080)}
    assert args["devices"] == ["/dev/video0:/dev/video0:rwm"]
    assert args["nano_cpus"] == 500_000_000 and args["mem_limit"] == 64 * 1024 * 1024
    assert args["restart_policy"] == {"Name": "no"}  # restarts are the enforcer's
    assert args["log_config"] == LOGS
    assert args["device_requests"][0]["DeviceIDs"] == ["GPU-1"]


def test_a_follower_joins_its_owners_namespace_and_publishes_nothing() -> None:
    follower = replace(OWNER, name="side", owner=False, ports=(), gpus=0, gpu_ids=())
    args = host_config_args(follower, "abc123", LOGS, {"edgeward-shop": "10.1.0.1"})
    assert args["network_mode"] == "container:abc123"
    assert "dns" not in args and "port_bindings" not in args and "device_requests" not in args
    assert create_args(follower, "sha256:x", {})["networking_config"] is None


def test_the_spec_hash_label_changes_with_the_image() -> None:
    one = create_args(OWNER, "sha256:one", {})
    two = create_args(OWNER, "sha256:two", {})
    assert one["labels"]["edgeward.spec-hash"] != two["labels"]["edgeward.spec-hash"]
    assert one["environment"] == ["MODE=prod"] and one["stop_timeout"] == 7
    assert one["ports"] == [(8080, "tcp")] and one["hostname"] == "web-0"
