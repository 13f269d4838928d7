"""What the engine is asked to create for one container: the docker SDK's arguments, made from
a `ContainerConfig` (no engine call here)."""

from __future__ import annotations

from typing import Any

from docker.types import DeviceRequest, EndpointConfig, Mount, NetworkingConfig

from enforcer.devices.passthrough import gpu_request
from enforcer.reconcile.instances import ContainerConfig

API_VERSION = "1.41"  # Docker 20.10 (Debian 12); newer engines still speak it


def host_config_args(
    cfg: ContainerConfig, owner_id: str | None, log_config: dict[str, Any], dns: dict[str, str]
) -> dict[str, Any]:
    """The arguments of the SDK's `create_host_config` for `cfg`; a follower container joins
    the network namespace of its owner `owner_id`."""
    mounts = [
        Mount(
            target=m.target,
            source=m.source,
            type="bind" if m.kind == "bind" else "volume",
            read_only=m.read_only,
        )
        for m in cfg.mounts
    ]
    kwargs: dict[str, Any] = {
        "mounts": mounts or None,
        "devices": [f"{d}:{d}:rwm" for d in cfg.devices] or None,
        "restart_policy": {"Name": "no"},  # restarts are ours: backoff, counting, probes
        "init": False,
        "log_config": log_config,
    }
    if cfg.owner:
        kwargs["network_mode"] = cfg.network
        if cfg.network in dns:
            kwargs["dns"] = [dns[cfg.network]]
        kwargs["port_bindings"] = {
            f"{p.port}/{p.protocol}": ("0.0.0.0", p.host_port) for p in cfg.ports
        } or None
    else:
        kwargs["network_mode"] = f"container:{owner_id}"
    if cfg.cpus:
        kwargs["nano_cpus"] = int(cfg.cpus * 1e9)
    if cfg.memory:
        kwargs["mem_limit"] = cfg.memory
    if cfg.gpus:
        kwargs["device_requests"] = [DeviceRequest(**gpu_request(cfg.gpus, cfg.gpu_ids))]
    return kwargs


def create_args(cfg: ContainerConfig, image_id: str, host_config: Any) -> dict[str, Any]:
    """The arguments of the SDK's `create_container` for `cfg` from `image_id`; its spec-hash
    label records what it was made from (a change of either recreates it)."""
    networking = None
    if cfg.owner:
        endpoint = EndpointConfig(API_VERSION, aliases=list(cfg.aliases))
        networking = NetworkingConfig({cfg.network: endpoint})  # type: ignore[arg-type]
    labels = dict(cfg.labels)
    labels["edgeward.spec-hash"] = cfg.config_hash(image_id)
    return {
        "image": image_id,
        "name": cfg.docker_name,
        "command": list(cfg.command) if cfg.command is not None else None,
        "entrypoint": list(cfg.entrypoint) if cfg.entrypoint is not None else None,
        "environment": [f"{k}={v}" for k, v in cfg.env],
        "labels": labels,
        "hostname": cfg.hostname if cfg.owner else None,
        "host_config": host_config,
        "networking_config": networking,
        "ports": [(p.port, p.protocol) for p in cfg.ports] or None,
        "stop_timeout": int(cfg.stop_timeout),
        "detach": True,
    }
