"""Desired instances: what exactly should run for each placed service instance.

Pure: from an application, a service, an instance id and the site/host context, compute the
Docker-level configuration of every container of the instance (names, labels, env with
variables expanded, mounts, devices, limits, ports) and a config hash per container that
decides whether a running container still matches (docker-compose's `config_hash`, with the
image id folded in by the runtime).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from enforcer.spec.model import (
    Application,
    Container,
    Outbound,
    RestartPolicy,
    Service,
    VolumeKind,
)
from enforcer.spec.variables import expand

LABEL = "edgeward"
MANAGED = f"{LABEL}.managed"


@dataclass(frozen=True)
class Context:
    """Where an instance runs: used for system variables and names."""

    site: str
    host: str


@dataclass(frozen=True)
class MountConfig:
    kind: str  # "bind" (config-map, secret files) | "volume" (ephemeral, persistent docker volume)
    source: str  # host directory for binds, docker volume name for volumes
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class PortConfig:
    port: int
    host_port: int
    protocol: str


@dataclass(frozen=True)
class ContainerConfig:
    """Everything that goes into `docker create` except the image id."""

    instance: str
    name: str  # the spec's container name
    docker_name: str
    image: str
    command: tuple[str, ...] | None
    entrypoint: tuple[str, ...] | None
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    mounts: tuple[MountConfig, ...]
    devices: tuple[str, ...]  # host device nodes passed in as-is
    gpus: int
    cpus: float
    memory: int
    network: str  # the app network (owner) — followers join the owner's namespace
    owner: bool  # holds the instance's network namespace, ports and aliases
    aliases: tuple[str, ...]
    ports: tuple[PortConfig, ...]
    hostname: str
    restart: RestartPolicy
    stop_timeout: float
    files_digest: str  # digest of config-map contents, so that changing them recreates

    def config_hash(self, image_id: str) -> str:
        doc = asdict(self)
        # the version label alone does not make a container different: a new version of an
        # app recreates only the services whose spec changed
        doc["labels"] = [kv for kv in doc["labels"] if kv[0] != f"{LABEL}.version"]
        doc["restart"] = self.restart.value
        doc["image_id"] = image_id
        raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True)
class ConfigFile:
    volume: str
    name: str
    data: str


@dataclass(frozen=True)
class DesiredInstance:
    id: str
    app: str
    service: str
    tenant: str
    version: str
    containers: tuple[ContainerConfig, ...]  # owner first
    network: str
    outbound: Outbound
    files: tuple[ConfigFile, ...]  # config-map files to render under files_dir
    files_dir: str  # host directory holding this instance's config-map volumes
    ephemeral_volumes: tuple[str, ...]
    persistent_volumes: tuple[str, ...]
    needs_secrets: bool

    @property
    def owner(self) -> ContainerConfig:
        return self.containers[0]


def network_name(tenant: str, app: str) -> str:
    return f"ew.{tenant}.{app}"


def bridge_name(host: str, tenant: str, app: str) -> str:
    """A Linux bridge name (at most 15 characters) unique per host, tenant and app."""
    digest = hashlib.sha1(f"{host}/{tenant}/{app}".encode()).hexdigest()[:11]
    return f"ew-{digest}"


def docker_name(instance: str, container: str) -> str:
    return f"ew.{instance}.{container}"


def volume_name(instance: str, volume: str) -> str:
    return f"ew.{instance}.{volume}"


def system_variables(
    app: Application, service: Service, instance: str, ctx: Context
) -> dict[str, str]:
    return {
        "SYS_SITE": ctx.site,
        "SYS_HOST": ctx.host,
        "SYS_TENANT": app.tenant,
        "SYS_APP": app.name,
        "SYS_SERVICE": service.name,
        "SYS_INSTANCE": instance,
    }


def variable_values(
    app: Application,
    service: Service,
    instance: str,
    ctx: Context,
    secrets: Mapping[tuple[str, str, str], str] | None = None,
) -> dict[str, str]:
    """Plain variables, secret variables where available, and the system variables."""
    values = system_variables(app, service, instance, ctx)
    for var in service.variables:
        if var.value is not None:
            values[var.name] = expand(var.value, values)
        elif var.value_from_secret is not None and secrets is not None:
            ref = var.value_from_secret
            key = (ref.vault, ref.secret, ref.key or "")
            if key in secrets:
                values[var.name] = secrets[key]
    return values


def _labels(app: Application, service: Service, instance: str, container: str) -> dict[str, str]:
    return {
        MANAGED: "true",
        f"{LABEL}.tenant": app.tenant,
        f"{LABEL}.app": app.name,
        f"{LABEL}.version": app.version,
        f"{LABEL}.service": service.name,
        f"{LABEL}.instance": instance,
        f"{LABEL}.container": container,
    }


def desired_instance(
    app: Application,
    service: Service,
    instance: str,
    ctx: Context,
    *,
    instances_dir: str,
    devices: tuple[str, ...] = (),
    gpus: int = 0,
    secrets: Mapping[tuple[str, str, str], str] | None = None,
    secrets_dir: str = "",
) -> DesiredInstance:
    values = variable_values(app, service, instance, ctx, secrets)
    files_dir = f"{instances_dir}/{instance}"
    files: list[ConfigFile] = []
    for vol in service.volumes:
        if vol.kind is VolumeKind.CONFIG_MAP:
            files.extend(ConfigFile(vol.name, it.name, expand(it.data, values)) for it in vol.items)
    digest = hashlib.sha256(
        json.dumps([asdict(f) for f in files], sort_keys=True).encode()
    ).hexdigest()[:16]
    net = network_name(app.tenant, app.name)
    containers = tuple(
        _container_config(
            app,
            service,
            instance,
            c,
            i == 0,
            values,
            net,
            files_dir,
            digest,
            devices,
            secrets_dir,
            gpus,
        )
        for i, c in enumerate(service.containers)
    )
    return DesiredInstance(
        id=instance,
        app=app.name,
        service=service.name,
        tenant=app.tenant,
        version=app.version,
        containers=containers,
        network=net,
        outbound=service.network.outbound,
        files=tuple(files),
        files_dir=files_dir,
        ephemeral_volumes=tuple(
            volume_name(instance, v.name) for v in service.volumes if v.kind is VolumeKind.EPHEMERAL
        ),
        persistent_volumes=tuple(
            volume_name(instance, v.name)
            for v in service.volumes
            if v.kind is VolumeKind.PERSISTENT
        ),
        needs_secrets=any(v.kind is VolumeKind.SECRET for v in service.volumes)
        or any(v.value_from_secret is not None for v in service.variables),
    )


def _container_config(
    app: Application,
    service: Service,
    instance: str,
    c: Container,
    owner: bool,
    values: Mapping[str, str],
    network: str,
    files_dir: str,
    files_digest: str,
    devices: tuple[str, ...],
    secrets_dir: str,
    gpus: int,
) -> ContainerConfig:
    mounts = []
    for m in c.mounts:
        vol = service.volume(m.volume)
        if vol.kind is VolumeKind.CONFIG_MAP:
            mounts.append(MountConfig("bind", f"{files_dir}/{vol.name}", m.path, True))
        elif vol.kind is VolumeKind.SECRET:
            mounts.append(MountConfig("bind", f"{secrets_dir}/{instance}/{vol.name}", m.path, True))
        else:
            mounts.append(
                MountConfig("volume", volume_name(instance, vol.name), m.path, m.read_only)
            )
    env = tuple(sorted((k, expand(v, values)) for k, v in c.env))
    return ContainerConfig(
        instance=instance,
        name=c.name,
        docker_name=docker_name(instance, c.name),
        image=c.image,
        command=None if c.cmd is None else tuple(expand(a, values) for a in c.cmd),
        entrypoint=None if c.entrypoint is None else tuple(expand(a, values) for a in c.entrypoint),
        env=env,
        labels=tuple(sorted(_labels(app, service, instance, c.name).items())),
        mounts=tuple(mounts),
        devices=devices,
        gpus=gpus if owner else 0,
        cpus=service.resources.cpus,
        memory=service.resources.memory,
        network=network,
        owner=owner,
        aliases=(service.name,) if owner else (),
        ports=tuple(PortConfig(i.port, i.host_port, i.protocol) for i in service.network.ingress)
        if owner
        else (),
        hostname=_hostname(instance),
        restart=c.restart,
        stop_timeout=c.stop_timeout,
        files_digest=files_digest,
    )


def _hostname(instance: str) -> str:
    name = instance.replace(".", "-")
    return name[:63].rstrip("-")
