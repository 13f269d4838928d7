"""Desired instances: what exactly should run for each placed service instance.

Pure: from an application, a service, an instance id and the site/host context, compute the
Docker-level configuration of every container of the instance (names, labels, env with
variables expanded, mounts, devices, limits, ports) and a config hash per container that
decides whether a running container still matches (docker-compose's `config_hash`, with the
image id folded in by the runtime).

`desired_instance` raises only `InstanceError`: whatever an application holds (a stored spec
that an older validator let through, a secret variable whose value is not there), computing
one instance can fail only that instance, with the reason.

Secret values reach an instance only through `secrets`: as env values (hashed as a digest,
never as text) and as the files of secret volumes (`SecretFile`, written by
`enforcer.secrets.files`). Neither shows in a repr.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from enforcer.devices.passthrough import GpuPassthrough
from enforcer.shared.spec.model import (
    Application,
    Container,
    Outbound,
    RestartPolicy,
    Service,
    VolumeKind,
)
from enforcer.shared.spec.validate import secret_variables
from enforcer.shared.spec.variables import expand, references

LABEL = "edgeward"
MANAGED = f"{LABEL}.managed"
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
SecretValues = Mapping[tuple[str, str, str], str]  # (vault, secret, key) -> value


class InstanceError(ValueError):
    """One instance cannot be computed from its application; `reason` says why (a line for
    ``ps``). The caller marks that instance failed and goes on with the others."""

    def __init__(self, instance: str, reason: str) -> None:
        super().__init__(f"{instance}: {reason}")
        self.instance = instance
        self.reason = reason


@dataclass(frozen=True)
class Context:
    """Where an instance runs: used for system variables and names."""

    site: str
    host: str
    stop_grace: float = 10.0  # `[runtime] stop-grace`: for containers that set no stop-timeout


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
    env: tuple[tuple[str, str], ...] = field(repr=False)  # may hold secret values
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
    secret_env: tuple[str, ...] = ()  # env names whose values come from secrets
    secrets_digest: str = ""  # digest of restart-on-change secret files this container mounts
    gpu_ids: tuple[str, ...] = ()  # device ids of the NVIDIA GPUs assigned to it ("": any)

    def config_hash(self, image_id: str) -> str:
        doc = asdict(self)
        # a secret goes into the hash input as a digest, never as its text
        doc["env"] = [[k, _digest(v) if k in self.secret_env else v] for k, v in doc["env"]]
        for key in ("secret_env", "secrets_digest", "gpu_ids"):  # unused: the hash as before
            if not doc[key]:
                del doc[key]
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
class SecretFile:
    """One key of a secret, as a file of a secret volume."""

    volume: str
    name: str  # the key
    data: str = field(repr=False)


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
    secret_files: tuple[SecretFile, ...] = ()  # files of secret volumes, under secrets_dir
    secrets_dir: str = ""  # host directory of this instance's secret volumes (on a tmpfs)
    gpus: tuple[str, ...] = ()  # the host's GPUs assigned to it (`Gpu.id`), for `ps`

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
    secrets: SecretValues | None = None,
) -> dict[str, str]:
    """Plain variables, secret variables where available, and the system variables."""
    values = system_variables(app, service, instance, ctx)
    for var in service.variables:
        if var.value is not None:
            values[var.name] = _expand(f"variables.{var.name}", var.value, values)
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
    gpus: int | GpuPassthrough = 0,
    secrets: SecretValues | None = None,
    secrets_dir: str = "",
) -> DesiredInstance:
    """What should run for `instance`. Every secret the service refers to must be in
    `secrets` (see `enforcer.secrets.vaults.missing_secret`). `gpus`: the GPUs assigned to it
    (their render nodes belong in `devices` too), or a count of NVIDIA GPUs that Docker picks.
    Raises `InstanceError` (and nothing else) when the instance cannot be computed."""
    gpu = gpus if isinstance(gpus, GpuPassthrough) else GpuPassthrough(nvidia_ids=("",) * gpus)
    files_dir = f"{instances_dir}/{instance}"
    secret_files = _secret_files(service, secrets or {})
    net = network_name(app.tenant, app.name)
    instance_secrets = f"{secrets_dir}/{instance}"
    tainted = secret_variables(service.variables)
    try:
        values = variable_values(app, service, instance, ctx, secrets)
        files = [
            ConfigFile(vol.name, it.name, _expand(f"volumes.{vol.name}.{it.name}", it.data, values))
            for vol in service.volumes
            if vol.kind is VolumeKind.CONFIG_MAP
            for it in vol.items
        ]
        digest = hashlib.sha256(
            json.dumps([asdict(f) for f in files], sort_keys=True).encode()
        ).hexdigest()[:16]
        containers = tuple(
            _container_config(
                app, service, instance, c, i == 0, values, net, files_dir, digest, devices,
                instance_secrets, gpu, tainted, secret_files, ctx.stop_grace,
            )
            for i, c in enumerate(service.containers)
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise InstanceError(instance, reason) from exc
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
        secret_files=secret_files,
        secrets_dir=instance_secrets if secret_files or _has_secret_volume(service) else "",
        gpus=gpu.assigned,
    )


def _has_secret_volume(service: Service) -> bool:
    return any(v.kind is VolumeKind.SECRET for v in service.volumes)


def is_secret_file_name(key: str) -> bool:
    """Whether a secret's key can be a file name (no "/", no leading ".", at most 255)."""
    return _FILE_NAME.fullmatch(key) is not None


def _secret_files(service: Service, secrets: SecretValues) -> tuple[SecretFile, ...]:
    files = []
    for vol in service.volumes:
        if vol.kind is not VolumeKind.SECRET or vol.secret is None:
            continue
        ref = vol.secret
        for (vault, secret, key), value in sorted(secrets.items()):
            if (vault, secret) != (ref.vault, ref.secret) or not is_secret_file_name(key):
                continue
            if ref.key is None or ref.key == key:
                files.append(SecretFile(vol.name, key, value))
    return tuple(files)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _files_digest(files: Iterable[SecretFile]) -> str:
    raw = json.dumps([[f.volume, f.name, _digest(f.data)] for f in files], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


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
    instance_secrets: str,
    gpu: GpuPassthrough,
    tainted: frozenset[str],
    secret_files: tuple[SecretFile, ...],
    stop_grace: float,
) -> ContainerConfig:
    mounts = []
    restart_on: set[str] = set()  # secret volumes whose change restarts this container
    for m in c.mounts:
        vol = service.volume(m.volume)
        if vol.kind is VolumeKind.CONFIG_MAP:
            mounts.append(MountConfig("bind", f"{files_dir}/{vol.name}", m.path, True))
        elif vol.kind is VolumeKind.SECRET:
            mounts.append(MountConfig("bind", f"{instance_secrets}/{vol.name}", m.path, True))
            if vol.restart_on_change:
                restart_on.add(vol.name)
        else:
            mounts.append(
                MountConfig("volume", volume_name(instance, vol.name), m.path, m.read_only)
            )
    at = f"containers.{c.name}"
    env = tuple(sorted((k, _expand(f"{at}.env.{k}", v, values)) for k, v in c.env))
    secret_env = tuple(sorted(k for k, v in c.env if references(v) & tainted))
    watched = [f for f in secret_files if f.volume in restart_on]
    return ContainerConfig(
        instance=instance,
        name=c.name,
        docker_name=docker_name(instance, c.name),
        image=c.image,
        command=None if c.cmd is None else tuple(_expand(f"{at}.cmd", a, values) for a in c.cmd),
        entrypoint=None
        if c.entrypoint is None
        else tuple(_expand(f"{at}.entrypoint", a, values) for a in c.entrypoint),
        env=env,
        labels=tuple(sorted(_labels(app, service, instance, c.name).items())),
        mounts=tuple(mounts),
        devices=devices,
        gpus=len(gpu.nvidia_ids) if owner else 0,
        gpu_ids=tuple(i for i in gpu.nvidia_ids if i) if owner else (),
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
        stop_timeout=c.stop_timeout if c.stop_timeout is not None else stop_grace,
        files_digest=files_digest,
        secret_env=secret_env,
        secrets_digest=_files_digest(watched) if restart_on else "",
    )


def _expand(where: str, text: str, values: Mapping[str, str]) -> str:
    try:
        return expand(text, values)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _hostname(instance: str) -> str:
    name = instance.replace(".", "-")
    return name[:63].rstrip("-")
