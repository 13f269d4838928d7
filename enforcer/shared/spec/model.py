"""The application spec of DESIGN.md as frozen dataclasses.

Values here are already validated and normalised: durations are seconds (float), sizes are bytes
(int), label expressions are kept as their source text (parse them with `enforcer.shared.labels`).
Everything is immutable and hashable so that plans and hashes can be computed from it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Mode(enum.Enum):
    REPLICATED = "replicated"
    ONE_PER_MATCHING_HOST = "one-per-matching-host"


class Priority(enum.IntEnum):
    """Higher value wins; a higher priority may preempt a lower one."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class RestartPolicy(enum.Enum):
    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class Outbound(enum.Enum):
    DENY = "deny"
    ALLOW = "allow"


@dataclass(frozen=True)
class Placement:
    match_host_labels: str = ""  # label expression source; "" matches any host
    devices: tuple[str, ...] = ()  # device labels the host must have
    gpus: int = 0


@dataclass(frozen=True)
class Resources:
    cpus: float = 0.0  # 0: no request, no limit
    memory: int = 0  # bytes; 0: no request, no limit


@dataclass(frozen=True)
class SecretRef:
    vault: str
    secret: str
    key: str | None = None  # None: the whole secret (for secret volumes)


@dataclass(frozen=True)
class Variable:
    name: str
    value: str | None = None
    value_from_secret: SecretRef | None = None


@dataclass(frozen=True)
class ConfigItem:
    name: str  # file name inside the volume
    data: str  # may contain ${NAME}, expanded per instance


class VolumeKind(enum.Enum):
    CONFIG_MAP = "config-map"
    SECRET = "secret"
    EPHEMERAL = "ephemeral"
    PERSISTENT = "persistent"


@dataclass(frozen=True)
class Volume:
    name: str
    kind: VolumeKind
    items: tuple[ConfigItem, ...] = ()  # config-map only
    secret: SecretRef | None = None  # secret only
    restart_on_change: bool = False  # secret only: a new vault version restarts the containers


@dataclass(frozen=True)
class Ingress:
    port: int
    host_port: int
    protocol: str = "tcp"  # tcp | udp


@dataclass(frozen=True)
class Network:
    ingress: tuple[Ingress, ...] = ()
    outbound: Outbound = Outbound.DENY


@dataclass(frozen=True)
class ExecProbe:
    command: tuple[str, ...]


@dataclass(frozen=True)
class HttpProbe:
    port: int
    path: str = "/"


@dataclass(frozen=True)
class TcpProbe:
    port: int


@dataclass(frozen=True)
class Probe:
    action: ExecProbe | HttpProbe | TcpProbe
    period: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 3
    initial_delay: float = 0.0


@dataclass(frozen=True)
class Probes:
    liveness: Probe | None = None
    readiness: Probe | None = None
    startup: Probe | None = None


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()  # sorted (name, value) pairs, values may hold ${NAME}
    mounts: tuple[Mount, ...] = ()
    probes: Probes = field(default_factory=Probes)
    restart: RestartPolicy = RestartPolicy.ALWAYS
    stop_timeout: float | None = None  # None: the host's `[runtime] stop-grace`


@dataclass(frozen=True)
class Service:
    name: str
    containers: tuple[Container, ...]
    mode: Mode = Mode.REPLICATED
    replicas: int = 1
    priority: Priority = Priority.NORMAL
    placement: Placement = field(default_factory=Placement)
    resources: Resources = field(default_factory=Resources)
    variables: tuple[Variable, ...] = ()
    volumes: tuple[Volume, ...] = ()
    network: Network = field(default_factory=Network)

    def volume(self, name: str) -> Volume:
        for v in self.volumes:
            if v.name == name:
                return v
        raise KeyError(name)


@dataclass(frozen=True)
class Application:
    name: str
    version: str
    services: tuple[Service, ...]
    tenant: str = "system"  # owning tenant; set by control, "system" for site-local apps

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)
