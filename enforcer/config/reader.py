"""`enforcer.toml`'s tables as `enforcer.config.model` values, with file:line in every error."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from enforcer.config.cluster import cluster_config
from enforcer.config.model import (
    ApiConfig,
    ConfigError,
    ControlConfig,
    DevicesConfig,
    DockerConfig,
    EnforcerConfig,
    HostConfig,
    LogsConfig,
    ReconcileConfig,
    RestartConfig,
    RuntimeConfig,
    SecretsConfig,
    SiteConfig,
)
from enforcer.config.network import network_config
from enforcer.config.toml import KeyPath, key_lines, line_of
from enforcer.logs.errors import parse_rate
from enforcer.shared.units import format_size, parse_duration, parse_size

__all__ = ["Reader", "os_reason", "parse_listen"]


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


def os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


class Reader:
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

    def size(self, table: Mapping[str, Any], key: KeyPath, default: int, minimum: int) -> int:
        if str(key[-1]) not in table:
            return default
        try:
            value = parse_size(table[str(key[-1])])
        except ValueError as exc:
            raise self.error(key, f"{_dotted(key)}: {exc}") from None
        if value < minimum:
            raise self.error(
                key, f"{_dotted(key)}: must be at least {format_size(minimum)}, got {value} bytes"
            )
        return value

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
            "docker", "api", "host", "site", "control", "cluster", "network", "devices",
            "restart", "reconcile", "runtime", "logs", "secrets",
        }  # fmt: skip
        top = self.table(data, (), {"state-dir", *sections})
        for name in sections:
            if name in top and not isinstance(top[name], dict):
                raise self.error((name,), f"{name}: expected a table, got {_type_name(top[name])}")
        t = {name: top.get(name, {}) for name in sections}
        default = EnforcerConfig()

        state_dir = self.path(top, ("state-dir",), default.state_dir)
        assert state_dir is not None

        self.table(t["docker"], ("docker",), {"host", "timeout", "pull-stall-timeout"})
        pull_stall = self.duration(
            t["docker"], ("docker", "pull-stall-timeout"), default.docker.pull_stall_timeout
        )
        if pull_stall < 1:
            raise self.error(
                ("docker", "pull-stall-timeout"), "docker.pull-stall-timeout: must be at least 1s"
            )
        docker_timeout = self.duration(t["docker"], ("docker", "timeout"), default.docker.timeout)
        if docker_timeout < 1:
            raise self.error(("docker", "timeout"), "docker.timeout: must be at least 1s")
        docker_host = self.string(t["docker"], ("docker", "host"), default.docker.host)
        if "://" not in docker_host:
            raise self.error(
                ("docker", "host"),
                f'docker.host: "{docker_host}" is not an address such as unix:///var/run/docker.sock',
            )

        self.table(
            t["api"],
            ("api",),
            {"socket", "listen", "token-file", "tenant-tokens", "tls-cert", "tls-key"},
        )
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
        tls_cert = self.path(t["api"], ("api", "tls-cert"), None)
        tls_key = self.path(t["api"], ("api", "tls-key"), None)
        if (tls_cert is None) != (tls_key is None):
            given = "tls-cert" if tls_key is None else "tls-key"
            raise self.error(
                ("api", given), "api.tls-cert and api.tls-key go together: give both or neither"
            )

        self.table(t["host"], ("host",), {"id", "labels"})
        self.table(t["site"], ("site",), {"name", "labels"})
        self.table(t["control"], ("control",), {"enrollment"})
        self.table(t["restart"], ("restart",), {"initial-delay", "max-delay", "reset-after"})
        self.table(t["reconcile"], ("reconcile",), {"resync-interval", "docker-parallelism"})
        self.table(t["runtime"], ("runtime",), {"stop-grace"})
        self.table(t["logs"], ("logs",), {"max-size", "max-files", "forward-errors", "error-rate"})
        forward_errors = t["logs"].get("forward-errors", default.logs.forward_errors)
        if not isinstance(forward_errors, bool):
            raise self.error(
                ("logs", "forward-errors"),
                f"logs.forward-errors: expected a boolean, got {_type_name(forward_errors)}",
            )
        error_rate = self.string(t["logs"], ("logs", "error-rate"), default.logs.error_rate)
        try:
            parse_rate(error_rate)
        except ValueError as exc:
            raise self.error(("logs", "error-rate"), f"logs.error-rate: {exc}") from None
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
            docker=DockerConfig(
                host=docker_host, timeout=docker_timeout, pull_stall_timeout=pull_stall
            ),
            api=ApiConfig(
                socket=sock,
                listen=listen,
                tenant_tokens=tenant_tokens,
                tls_cert=tls_cert,
                tls_key=tls_key,
            ),
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
            cluster=cluster_config(self, t["cluster"]),
            network=network_config(self, t["network"]),
            devices=self.devices(t["devices"]),
            restart=restart,
            reconcile=reconcile,
            runtime=RuntimeConfig(
                stop_grace=self.duration(
                    t["runtime"], ("runtime", "stop-grace"), default.runtime.stop_grace
                )
            ),
            logs=LogsConfig(
                max_size=self.size(t["logs"], ("logs", "max-size"), default.logs.max_size, 65536),
                max_files=self.integer(t["logs"], ("logs", "max-files"), default.logs.max_files, 1),
                forward_errors=forward_errors,
                error_rate=error_rate,
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
    """`enforcer.devices.rules.parse_rules` where that module exists (imported only when needed)."""
    try:
        module = importlib.import_module("enforcer.devices.rules")
    except ModuleNotFoundError as exc:
        if exc.name == "enforcer.devices.rules":
            return None
        raise
    parser: Callable[[list[dict[str, Any]]], Any] | None = getattr(module, "parse_rules", None)
    return parser
