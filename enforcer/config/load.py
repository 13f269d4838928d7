"""The enforcer's configuration: `enforcer.toml` (DESIGN.md, Configuration) as frozen dataclasses.

Every key has a default, so an empty file (or none at the default path) is a valid
configuration. Unknown keys and values of the wrong type are `ConfigError`s that name the file
and the line. `load_config` resolves every derived default (the token file, the host id, the
site name), so the daemon sees concrete values only.
"""

from __future__ import annotations

import importlib
import os
import re
import secrets
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from enforcer.config.toml import KeyPath, key_lines, line_of
from enforcer.shared.units import parse_duration

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "ApiConfig",
    "ClusterConfig",
    "ConfigError",
    "ControlConfig",
    "DevicesConfig",
    "DockerConfig",
    "EnforcerConfig",
    "HostConfig",
    "ReconcileConfig",
    "RestartConfig",
    "RuntimeConfig",
    "SecretsConfig",
    "SiteConfig",
    "ensure_api_token",
    "load_config",
    "parse_config",
    "parse_listen",
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


@dataclass(frozen=True)
class ApiConfig:
    """``[api]``: the local API."""

    socket: Path = Path("/run/edgeward/enforcer.sock")
    """The unix socket (0660, group ``edgeward``); no token needed on it."""

    listen: str = ""
    """``host:port`` of an optional TCP listener that needs a bearer token; "" means none."""

    token_file: Path = DEFAULT_STATE_DIR / TOKEN_FILE_NAME
    """``token-file``: the bearer token for `listen`; default ``<state-dir>/api-token``,
    created (0600, random) on first start when `listen` is set. See `ensure_api_token`."""

    tenant_tokens: Mapping[str, str] = field(default_factory=dict)
    """``tenant-tokens``: tenant -> its bearer token, or ``@/path/to/file`` holding it. A
    request with a tenant's token (TCP or unix socket) sees only that tenant's applications,
    instances, logs and events. Files ``<state-dir>/tenant-tokens/<tenant>`` add more."""


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
    """``[cluster]``: multi-host sites (no keys yet; an empty table is accepted)."""


@dataclass(frozen=True)
class DevicesConfig:
    """``[devices]``: device labelling rules (``[[devices.rule]]``)."""

    raw_rules: tuple[Mapping[str, Any], ...] = ()
    """The rules as written, one table each."""

    rules: tuple[Any, ...] = ()
    """The rules as `enforcer.devices.udev.parse_rules` returns them, or `raw_rules` where that
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
class SecretsConfig:
    """``[secrets]``: where secret volumes live."""

    dir: Path = Path("/run/edgeward/secrets")
    """The directory of secret files; the enforcer mounts a tmpfs there at start unless it
    already is on one, so secret values never reach a disk."""


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
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    restart: RestartConfig = field(default_factory=RestartConfig)
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)

    source: Path | None = None
    """The file this was read from; None when none was read (all defaults)."""


def load_config(path: Path | None = None, *, state_dir: Path | None = None) -> EnforcerConfig:
    """Read the configuration.

    `path` None means ``$EDGEWARD_CONFIG``, else /etc/edgeward/enforcer.toml where a missing
    file gives all defaults. A path given explicitly (argument or environment) must exist.
    `state_dir` overrides ``state-dir`` (``--state-dir``) before derived defaults are filled in.
    Raises ConfigError.
    """
    explicit = path is not None
    if path is None:
        env = os.environ.get(CONFIG_ENV, "")
        explicit = env != ""
        path = Path(env) if explicit else DEFAULT_CONFIG_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: no such file") from None
        return _finish(EnforcerConfig(), None, state_dir)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {_os_reason(exc)}") from None
    return parse_config(text, path, state_dir=state_dir)


def parse_config(text: str, path: Path, *, state_dir: Path | None = None) -> EnforcerConfig:
    """Parse `text` read from `path` (used in messages). Raises ConfigError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    reader = _Reader(path, text)
    config = reader.config(data)
    return _finish(replace(config, source=path), reader.token_file, state_dir)


def parse_listen(listen: str) -> tuple[str, int]:
    """``"0.0.0.0:7700"`` -> ("0.0.0.0", 7700); ``"[::1]:7700"`` -> ("::1", 7700);
    ``":7700"`` -> ("", 7700), all interfaces; port 0 picks a free port. Raises ValueError."""
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*)):([0-9]{1,5})", listen.strip())
    if match is None:
        raise ValueError(f'"{listen}" is not host:port (e.g. "0.0.0.0:7700" or "[::]:7700")')
    port = int(match.group(3))
    if port > 65535:
        raise ValueError(f'"{listen}": port {port} is out of range')
    return (match.group(1) or match.group(2) or "", port)


def ensure_api_token(config: EnforcerConfig) -> str | None:
    """The bearer token for the TCP listener: None when `listen` is empty; else the content of
    the token file, which is created (0600, random) when it does not exist yet."""
    if not config.api.listen:
        return None
    path = config.api.token_file
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process just wrote it: use theirs
            return ensure_api_token(config)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        return token
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the API token: {_os_reason(exc)}") from None
    if not token:
        raise ConfigError(f"{path}: the API token file is empty")
    return token


# --- internals --------------------------------------------------------------------------------

_TOML_TYPES: dict[type, str] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    dict: "a table",
    list: "an array",
}


def _type_name(value: object) -> str:
    for kind, name in _TOML_TYPES.items():
        if type(value) is kind:
            return name
    return "a date/time" if hasattr(value, "isoformat") else type(value).__name__


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


class _Reader:
    """Turns tomllib's data into `EnforcerConfig`, with file:line in every error."""

    def __init__(self, path: Path, text: str) -> None:
        self.file = path
        self.lines = key_lines(text)
        self.token_file: Path | None = None  # api.token-file when written in the file

    def error(self, key: KeyPath, message: str) -> ConfigError:
        line = line_of(self.lines, key)
        where = f"{self.file}:{line}" if line is not None else str(self.file)
        return ConfigError(f"{where}: {message}")

    def table(self, data: object, key: KeyPath, known: set[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.error(key, f"{_dotted(key)}: expected a table, got {_type_name(data)}")
        for name in data:
            if name not in known:
                raise self.error((*key, name), self._unknown(key, name, known))
        return data

    def _unknown(self, key: KeyPath, name: str, known: set[str]) -> str:
        message = f'unknown key "{_dotted((*key, name))}"'
        if known:
            message += f" (known here: {', '.join(sorted(known))})"
        else:
            message += f" ([{_dotted(key)}] takes no keys)"
        return message

    def string(self, table: Mapping[str, Any], key: KeyPath, default: str) -> str:
        value = table.get(str(key[-1]), default)
        if not isinstance(value, str):
            raise self.error(key, f"{_dotted(key)}: expected a string, got {_type_name(value)}")
        return value

    def path(self, table: Mapping[str, Any], key: KeyPath, default: Path | None) -> Path | None:
        text = self.string(table, key, "" if default is None else str(default))
        if not text:
            if default is None:
                return None
            raise self.error(key, f"{_dotted(key)}: must not be empty")
        return Path(text)

    def duration(self, table: Mapping[str, Any], key: KeyPath, default: float) -> float:
        if str(key[-1]) not in table:
            return default
        value = table[str(key[-1])]
        if not isinstance(value, str):
            raise self.error(
                key, f'{_dotted(key)}: expected a duration such as "10s", got {_type_name(value)}'
            )
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(key, f"{_dotted(key)}: {exc}") from None

    def integer(self, table: Mapping[str, Any], key: KeyPath, default: int, minimum: int) -> int:
        value = table.get(str(key[-1]), default)
        if type(value) is not int:
            raise self.error(key, f"{_dotted(key)}: expected an integer, got {_type_name(value)}")
        if value < minimum:
            raise self.error(key, f"{_dotted(key)}: must be at least {minimum}, got {value}")
        return value

    def labels(self, table: Mapping[str, Any], key: KeyPath) -> dict[str, str]:
        value = table.get(str(key[-1]), {})
        if not isinstance(value, dict):
            raise self.error(key, f"{_dotted(key)}: expected a table, got {_type_name(value)}")
        labels: dict[str, str] = {}
        for name, label in value.items():
            if not isinstance(label, str):
                raise self.error(
                    (*key, name),
                    f'{_dotted(key)}: label "{name}" must be a string, got {_type_name(label)}',
                )
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", name):
                raise self.error((*key, name), f'{_dotted(key)}: "{name}" is not a label name')
            if name.startswith("system/"):
                raise self.error(
                    (*key, name), f'{_dotted(key)}: "{name}": system/ labels are set by Edgeward'
                )
            labels[name] = label
        return labels

    def config(self, data: dict[str, Any]) -> EnforcerConfig:
        sections = {
            "docker", "api", "host", "site", "control", "cluster", "devices",
            "restart", "reconcile", "runtime", "secrets",
        }  # fmt: skip
        top = self.table(data, (), {"state-dir", *sections})
        for name in sections:
            if name in top and not isinstance(top[name], dict):
                raise self.error((name,), f"{name}: expected a table, got {_type_name(top[name])}")
        t = {name: top.get(name, {}) for name in sections}
        default = EnforcerConfig()

        state_dir = self.path(top, ("state-dir",), default.state_dir)
        assert state_dir is not None

        self.table(t["docker"], ("docker",), {"host"})
        docker_host = self.string(t["docker"], ("docker", "host"), default.docker.host)
        if "://" not in docker_host:
            raise self.error(
                ("docker", "host"),
                f'docker.host: "{docker_host}" is not an address such as unix:///var/run/docker.sock',
            )

        self.table(t["api"], ("api",), {"socket", "listen", "token-file", "tenant-tokens"})
        sock = self.path(t["api"], ("api", "socket"), default.api.socket)
        assert sock is not None
        listen = self.string(t["api"], ("api", "listen"), "")
        if listen:
            try:
                if parse_listen(listen)[1] == 0:
                    raise ValueError(f'"{listen}": give a port other than 0')
            except ValueError as exc:
                raise self.error(("api", "listen"), f"api.listen: {exc}") from None
        self.token_file = self.path(t["api"], ("api", "token-file"), None)
        tenant_tokens = self.tenant_tokens(t["api"], ("api", "tenant-tokens"))

        self.table(t["host"], ("host",), {"id", "labels"})
        self.table(t["site"], ("site",), {"name", "labels"})
        self.table(t["control"], ("control",), {"enrollment"})
        self.table(t["cluster"], ("cluster",), set())
        self.table(t["restart"], ("restart",), {"initial-delay", "max-delay", "reset-after"})
        self.table(t["reconcile"], ("reconcile",), {"resync-interval", "docker-parallelism"})
        self.table(t["runtime"], ("runtime",), {"stop-grace"})
        self.table(t["secrets"], ("secrets",), {"dir"})
        secrets_dir = self.path(t["secrets"], ("secrets", "dir"), default.secrets.dir)
        assert secrets_dir is not None
        if not secrets_dir.is_absolute():
            raise self.error(("secrets", "dir"), f'secrets.dir: "{secrets_dir}" is not absolute')

        restart = RestartConfig(
            initial_delay=self.duration(
                t["restart"], ("restart", "initial-delay"), default.restart.initial_delay
            ),
            max_delay=self.duration(
                t["restart"], ("restart", "max-delay"), default.restart.max_delay
            ),
            reset_after=self.duration(
                t["restart"], ("restart", "reset-after"), default.restart.reset_after
            ),
        )
        if restart.initial_delay <= 0:
            raise self.error(("restart", "initial-delay"), "restart.initial-delay: must be > 0")
        if restart.max_delay < restart.initial_delay:
            raise self.error(
                ("restart", "max-delay"), "restart.max-delay: must not be below initial-delay"
            )
        reconcile = ReconcileConfig(
            resync_interval=self.duration(
                t["reconcile"], ("reconcile", "resync-interval"), default.reconcile.resync_interval
            ),
            docker_parallelism=self.integer(
                t["reconcile"],
                ("reconcile", "docker-parallelism"),
                default.reconcile.docker_parallelism,
                minimum=1,
            ),
        )
        if reconcile.resync_interval <= 0:
            raise self.error(
                ("reconcile", "resync-interval"), "reconcile.resync-interval: must be > 0"
            )

        return EnforcerConfig(
            state_dir=state_dir,
            docker=DockerConfig(host=docker_host),
            api=ApiConfig(socket=sock, listen=listen, tenant_tokens=tenant_tokens),
            host=HostConfig(
                id=self.string(t["host"], ("host", "id"), ""),
                labels=self.labels(t["host"], ("host", "labels")),
            ),
            site=SiteConfig(
                name=self.string(t["site"], ("site", "name"), ""),
                labels=self.labels(t["site"], ("site", "labels")),
            ),
            control=ControlConfig(
                enrollment=self.string(t["control"], ("control", "enrollment"), "")
            ),
            cluster=ClusterConfig(),
            devices=self.devices(t["devices"]),
            restart=restart,
            reconcile=reconcile,
            runtime=RuntimeConfig(
                stop_grace=self.duration(
                    t["runtime"], ("runtime", "stop-grace"), default.runtime.stop_grace
                )
            ),
            secrets=SecretsConfig(dir=secrets_dir),
        )

    def tenant_tokens(self, table: Mapping[str, Any], key: KeyPath) -> dict[str, str]:
        value = table.get(str(key[-1]), {})
        if not isinstance(value, dict):
            raise self.error(key, f"{_dotted(key)}: expected a table, got {_type_name(value)}")
        tokens: dict[str, str] = {}
        for tenant, token in value.items():
            where = (*key, tenant)
            if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", tenant):
                raise self.error(where, f'{_dotted(key)}: "{tenant}" is not a tenant name')
            if not isinstance(token, str) or not token.strip() or token.strip() == "@":
                raise self.error(
                    where,
                    f'{_dotted(key)}.{tenant}: expected a token or "@/path/to/token-file"',
                )
            tokens[tenant] = token.strip()
        return tokens

    def devices(self, table: dict[str, Any]) -> DevicesConfig:
        self.table(table, ("devices",), {"rule"})
        raw = table.get("rule", [])
        if not isinstance(raw, list):
            raise self.error(
                ("devices", "rule"),
                f"devices.rule: expected an array of tables ([[devices.rule]]), "
                f"got {_type_name(raw)}",
            )
        for i, rule in enumerate(raw):
            if not isinstance(rule, dict):
                raise self.error(
                    ("devices", "rule", i),
                    f"devices.rule[{i}]: expected a table, got {_type_name(rule)}",
                )
        rules: tuple[Any, ...] = tuple(raw)
        if raw:
            parse_rules = _device_rule_parser()
            if parse_rules is not None:
                try:
                    rules = tuple(parse_rules(raw))
                except (ValueError, TypeError) as exc:
                    message = str(exc)
                    key: KeyPath = ("devices", "rule")
                    if m := re.match(r"devices\.rule\[(\d+)\](?:\.([A-Za-z0-9_-]+))?", message):
                        key = (*key, int(m.group(1)), *([m.group(2)] if m.group(2) else []))
                    else:
                        message = f"devices.rule: {message}"
                    raise self.error(key, message) from None
        return DevicesConfig(raw_rules=tuple(raw), rules=rules)


def _device_rule_parser() -> Callable[[list[dict[str, Any]]], Any] | None:
    """`enforcer.devices.udev.parse_rules` where that module exists (imported only when needed)."""
    try:
        module = importlib.import_module("enforcer.devices.udev")
    except ModuleNotFoundError as exc:
        if exc.name == "enforcer.devices.udev":
            return None
        raise
    parser: Callable[[list[dict[str, Any]]], Any] | None = getattr(module, "parse_rules", None)
    return parser


def _finish(
    config: EnforcerConfig, token_file: Path | None, state_dir: Path | None
) -> EnforcerConfig:
    """Apply the --state-dir override and fill in the derived defaults."""
    if state_dir is not None:
        config = replace(config, state_dir=state_dir)
    api = replace(config.api, token_file=token_file or config.state_dir / TOKEN_FILE_NAME)
    host = config.host
    if not host.id:
        host = replace(host, id=_machine_id())
    site = config.site
    if not site.name:
        site = replace(site, name=socket.gethostname())
    return replace(config, api=api, host=host, site=site)


def _machine_id() -> str:
    """/etc/machine-id, else the short hostname (as `enforcer.site.hostinfo.default_host_id`)."""
    try:
        machine_id = Path("/etc/machine-id").read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        machine_id = ""
    if machine_id and machine_id != "uninitialized":
        return machine_id
    return socket.gethostname().split(".", 1)[0] or "localhost"
