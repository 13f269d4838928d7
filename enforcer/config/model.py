"""The enforcer's configuration as frozen dataclasses: one per table of ``enforcer.toml``.

`enforcer.config.load` reads a file into these; each field says its key and default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIR",
    "TOKEN_FILE_NAME",
    "ApiConfig",
    "ClusterConfig",
    "ConfigError",
    "ControlConfig",
    "DevicesConfig",
    "DockerConfig",
    "EnforcerConfig",
    "HostConfig",
    "NetworkConfig",
    "ReconcileConfig",
    "RestartConfig",
    "RuntimeConfig",
    "SecretsConfig",
    "SiteConfig",
]

DEFAULT_CONFIG_PATH = Path("/etc/edgeward/enforcer.toml")
CONFIG_ENV = "EDGEWARD_CONFIG"
DEFAULT_STATE_DIR = Path("/var/lib/edgeward/enforcer")
TOKEN_FILE_NAME = "api-token"


class ConfigError(Exception):
    """The configuration cannot be used; str() names the file and, where known, the line."""


@dataclass(frozen=True)
class DockerConfig:
    """``[docker]``: the Docker engine this enforcer drives."""

    host: str = "unix:///var/run/docker.sock"
    """The engine's address, as in ``DOCKER_HOST``."""

    timeout: float = 60.0
    """``timeout``: seconds one call to the engine may take before it counts as failed.
    Streams that follow (``logs -f``) are not bound by it: they wait for output forever."""

    pull_stall_timeout: float = 60.0
    """``pull-stall-timeout``: an image pull that shows no progress for this many seconds is
    ended, reported (``image.pull-stalled``) and retried with backoff."""


@dataclass(frozen=True)
class ApiConfig:
    """``[api]``: the local API."""

    socket: Path = Path("/run/edgeward/enforcer.sock")
    """The unix socket (0660, group ``edgeward``); no token needed on it."""

    listen: str = ""
    """``host:port`` of an optional TCP listener that needs a bearer token; "" means none. It
    serves TLS (see `tls_cert`) unless it listens on loopback only."""

    token_file: Path = DEFAULT_STATE_DIR / TOKEN_FILE_NAME
    """``token-file``: the bearer token for `listen`; default ``<state-dir>/api-token``,
    created (0600, random) on first start when `listen` is set. See `ensure_api_token`."""

    tenant_tokens: Mapping[str, str] = field(default_factory=dict)
    """``tenant-tokens``: tenant -> its bearer token, or ``@/path/to/file`` holding it. A
    request with a tenant's token (TCP or unix socket) sees only that tenant's applications,
    instances, logs and events. Files ``<state-dir>/tenant-tokens/<tenant>`` add more."""

    tls_cert: Path | None = None
    """``tls-cert``: the certificate (PEM, chain first) the TCP listener serves; with
    `tls_key`. Without both, a listener off loopback serves a self-signed certificate of the
    host made at first start in ``<state-dir>/api-tls/``; on loopback it serves plain HTTP."""

    tls_key: Path | None = None
    """``tls-key``: the private key (PEM) of `tls_cert`."""


@dataclass(frozen=True)
class HostConfig:
    """``[host]``: this host."""

    id: str = ""
    """The host's id; default: the content of /etc/machine-id (else the short hostname)."""

    labels: Mapping[str, str] = field(default_factory=dict)
    """Host labels for placement (``zone = "line-1"``)."""


@dataclass(frozen=True)
class SiteConfig:
    """``[site]``: the site, for a single-host site without control."""

    name: str = ""
    """The site's name; default: the hostname."""

    labels: Mapping[str, str] = field(default_factory=dict)
    """Site labels."""


@dataclass(frozen=True)
class ControlConfig:
    """``[control]``: the link to the central control service."""

    enrollment: str = ""
    """An enrollment bundle, or ``@/path/to/file``; "" means not enrolled by configuration."""


@dataclass(frozen=True)
class ClusterConfig:
    """``[cluster]``: multi-host sites (DESIGN.md, "Site, hosts and the scheduler"). With no
    ``etcd-endpoints`` (and nothing else set) the site is one host on SQLite."""

    advertise: str = ""
    """This host's address inside the site."""

    role: str = "controller"
    """``controller`` (a site-store member runs here) or ``worker``."""

    join: str = ""
    """A join bundle, or ``@/path``; empty on the site's first controller."""

    etcd_endpoints: tuple[str, ...] = ()
    """``etcd-endpoints``: an existing etcd's client URLs, instead of a managed member."""

    client_port: int = 7720
    """``client-port``: the managed member's client port (on ``advertise``)."""

    peer_port: int = 7721
    """``peer-port``: the managed member's peer port."""

    lease_ttl: float = 3.0
    """``lease-ttl``: a host silent this long is dead."""

    join_port: int = 7722
    """``join-port``: where a controller's join service listens (on ``advertise``)."""

    @property
    def enabled(self) -> bool:
        """A multi-host site: the site store is etcd (given, or this host's own member)."""
        return bool(self.etcd_endpoints or self.advertise or self.join)


@dataclass(frozen=True)
class DevicesConfig:
    """``[devices]``: device labelling rules (``[[devices.rule]]``)."""

    raw_rules: tuple[Mapping[str, Any], ...] = ()
    """The rules as written, one table each."""

    rules: tuple[Any, ...] = ()
    """The rules as `enforcer.devices.rules.parse_rules` returns them, or `raw_rules` where that
    module does not exist."""


@dataclass(frozen=True)
class RestartConfig:
    """``[restart]``: back-off between restarts of a crashed container."""

    initial_delay: float = 0.2
    """``initial-delay``: the delay before the second restart of a crash streak (the first is
    immediate); it doubles with each further crash, like Docker's own 100 ms doubling."""

    max_delay: float = 300.0
    """``max-delay``: the delay doubles up to this many seconds."""

    reset_after: float = 600.0
    """``reset-after``: a container that ran this long starts again at `initial_delay`."""


@dataclass(frozen=True)
class ReconcileConfig:
    """``[reconcile]``: the reconciler's pace."""

    resync_interval: float = 30.0
    """``resync-interval``: seconds between full comparisons with Docker, events aside."""

    docker_parallelism: int = 8
    """``docker-parallelism``: Docker calls in flight at once."""


@dataclass(frozen=True)
class RuntimeConfig:
    """``[runtime]``: how containers are run."""

    stop_grace: float = 10.0
    """``stop-grace``: seconds between SIGTERM and SIGKILL when a spec sets no stop-timeout."""


@dataclass(frozen=True)
class LogsConfig:
    """``[logs]``: the logs of managed containers stay at the site, capped per container."""

    max_size: int = 10 * 1024 * 1024
    """``max-size``: bytes of one log file of a container (Docker's ``local`` driver)."""

    max_files: int = 3
    """``max-files``: log files kept per container; its logs never take more than
    max-size x max-files. Applies to containers created after a change."""

    forward_errors: bool = True
    """``forward-errors``: error lines of managed containers (stderr, or an error level) go to
    control as ``log-error`` events (enrolled sites; always kept in the site's events)."""

    error_rate: str = "10/min"
    """``error-rate``: error lines forwarded per instance, e.g. ``"10/min"`` (bursts of twice
    as many); the rest are counted in one ``log-errors-suppressed`` event per period."""


@dataclass(frozen=True)
class SecretsConfig:
    """``[secrets]``: where secret volumes live."""

    dir: Path = Path("/run/edgeward/secrets")
    """The directory of secret files; the enforcer mounts a tmpfs there at start unless it
    already is on one, so secret values never reach a disk."""


@dataclass(frozen=True)
class NetworkConfig:
    """``[network]``: the site network of a multi-host site (docs/site-network.md). A one-host
    site runs none of it."""

    site_network: bool = True
    """``site-network``: join the hosts' application networks through WireGuard (on by default:
    a multi-host site needs nobody to configure it; several hosts that share one network
    namespace, as in tests, turn it off)."""

    range: str = "10.213.0.0/16"
    """The site's container address range (the first host's value holds for the site)."""

    host_prefix: int = 22
    """``host-prefix``: the size of each host's slice of the range."""

    network_prefix: int = 26
    """``network-prefix``: the size of each application network within a slice."""

    wireguard_port: int = 51820
    """``wireguard-port``: the UDP port WireGuard listens on (on the cluster address)."""


@dataclass(frozen=True)
class EnforcerConfig:
    """The whole of ``enforcer.toml``."""

    state_dir: Path = DEFAULT_STATE_DIR
    """``state-dir``: the enforcer's own files (store, keys, token)."""

    docker: DockerConfig = field(default_factory=DockerConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    host: HostConfig = field(default_factory=HostConfig)
    site: SiteConfig = field(default_factory=SiteConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    restart: RestartConfig = field(default_factory=RestartConfig)
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)

    source: Path | None = None
    """The file this was read from; None when none was read (all defaults)."""
