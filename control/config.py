"""``control.toml`` (DESIGN.md, "Configuration"): every key has a default; unknown keys are errors.

tomllib does not report where a key stands, so errors find the key's line by scanning the text.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from enforcer.shared.units import format_duration, parse_duration

__all__ = [
    "DEFAULT_CONFIG",
    "ConfigError",
    "ControlConfig",
    "check_database_url",
    "describe_database",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG = Path("/etc/edgeward/control.toml")
DEFAULT_STATE_DIR = Path("/var/lib/edgeward/control")
DEFAULT_PORT = 7443


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names file and line."""


DEFAULT_EVENTS_KEEP = 14 * 24 * 3600.0
MIN_EVENTS_KEEP = 60.0


@dataclass(frozen=True)
class EventsConfig:
    keep: float = DEFAULT_EVENTS_KEEP
    """How long sites' events are kept (the newest 1000 per site at most), in seconds."""


@dataclass(frozen=True)
class ControlConfig:
    state_dir: Path = DEFAULT_STATE_DIR
    """Where control keeps its CA, admin token and SQLite database."""
    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    """host:port of the HTTPS API."""
    public_url: str = ""
    """The URL put into enrollment bundles; default: https://<listen host>:<port>."""
    database: str = ""
    """Empty: SQLite in state-dir; or a "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" URL."""
    metrics_public: bool = False
    """Serve ``GET /v1/metrics`` without a token (for a Prometheus that scrapes without one)."""
    events: EventsConfig = field(default_factory=EventsConfig)
    """``[events]``: how long sites' events are kept."""

    @property
    def listen_host(self) -> str:
        return split_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_host_port(self.listen)[1]

    @property
    def url(self) -> str:
        """The URL sites and operators use."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.listen_host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1" if host != "::" else "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.listen_port}"

    @property
    def public_host(self) -> str | None:
        return urlsplit(self.public_url).hostname if self.public_url else None


def split_host_port(text: str) -> tuple[str, int]:
    """``"0.0.0.0:7443"`` -> ("0.0.0.0", 7443); ``"[::]:7443"`` and ``":7443"`` also work."""
    match = re.fullmatch(r"\[([^\]]*)\]:(\d+)|([^:\[\]]*):(\d+)", text.strip())
    if match is None:
        raise ValueError(f'"{text}" is not host:port')
    host = match.group(1) if match.group(1) is not None else match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f'"{text}": port {port} is out of range')
    return host, port


DEFAULT_PG_PORT = 5432


def _database_parts(url: str) -> tuple[str, str, str]:
    """(host, port, database) of a postgresql:// URL; ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("must be empty (SQLite) or a postgresql:// URL")
    query = parse_qs(parts.query)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port in the URL is not a number from 1 to 65535") from None
    host = parts.hostname or (query.get("host") or [""])[0]
    if not host:
        raise ValueError("the URL names no host (postgresql://HOST/DATABASE, or ?host=/run/dir)")
    database = unquote(parts.path.lstrip("/")) or (query.get("dbname") or [""])[0]
    if not database or "/" in database:
        raise ValueError("the URL names no database (postgresql://HOST/DATABASE)")
    return host, str(port or (query.get("port") or [str(DEFAULT_PG_PORT)])[0]), database


def check_database_url(url: str) -> str | None:
    """What is wrong with a `database` value (never quoting it: it may hold a password)."""
    if not url:
        return None
    try:
        _database_parts(url)
    except ValueError as e:
        return str(e)
    return None


def describe_database(url: str) -> str:
    """``PostgreSQL database "edgeward" on db1:5432`` for messages: never the password."""
    try:
        host, port, database = _database_parts(url)
    except ValueError:
        return "the PostgreSQL database (malformed URL)"
    where = f"{host}:{port}" if not host.startswith("/") else f"{host} (port {port})"
    return f'PostgreSQL database "{database}" on {where}'


_KEYS = {"state-dir", "listen", "public-url", "database", "metrics-public", "events"}
_TABLES = {"events"}
_BOOLEANS = {"metrics-public"}


def _line_of(text: str, key: str) -> int:
    """The 1-based line where `key` is assigned or opened as a table; 0 when not found."""
    escaped = re.escape(key)
    patterns = [
        re.compile(rf'^\s*("{escaped}"|\'{escaped}\'|{escaped})\s*='),
        re.compile(rf'^\s*\[\[?\s*("{escaped}"|{escaped})\s*(\.|\]|$)'),
    ]
    for number, line in enumerate(text.splitlines(), start=1):
        if any(p.search(line) for p in patterns):
            return number
    return 0


def _where(path: str, text: str, key: str) -> str:
    line = _line_of(text, key)
    return f"{path}:{line}" if line else path


def parse_config(text: str, path: str = "control.toml") -> ControlConfig:
    """The configuration in `text`; raises ConfigError naming `path` and the line."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e
    for key in doc:
        if key not in _KEYS:
            raise ConfigError(
                f"{_where(path, text, key)}: unknown key {key!r} "
                f"(known: {', '.join(sorted(_KEYS))})"
            )
    values: dict[str, str] = {}
    for key in (_KEYS - _BOOLEANS - _TABLES) & doc.keys():
        if not isinstance(doc[key], str):
            raise ConfigError(f"{_where(path, text, key)}: {key} must be a string")
        values[key] = doc[key]
    for key in _BOOLEANS & doc.keys():
        if not isinstance(doc[key], bool):
            raise ConfigError(f"{_where(path, text, key)}: {key} must be true or false")
    config = ControlConfig(
        state_dir=Path(values.get("state-dir") or DEFAULT_STATE_DIR),
        listen=values.get("listen") or ControlConfig.listen,
        public_url=values.get("public-url", ""),
        database=values.get("database", ""),
        metrics_public=bool(doc.get("metrics-public", False)),
        events=_events(doc.get("events", {}), path, text),
    )
    try:
        split_host_port(config.listen)
    except ValueError as e:
        raise ConfigError(f"{_where(path, text, 'listen')}: listen: {e}") from e
    if config.public_url:
        parts = urlsplit(config.public_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(
                f"{_where(path, text, 'public-url')}: public-url must be an "
                f"https:// URL, not {config.public_url!r}"
            )
    problem = check_database_url(config.database)
    if problem is not None:
        raise ConfigError(f"{_where(path, text, 'database')}: database: {problem}")
    return config


def _events(table: object, path: str, text: str) -> EventsConfig:
    """The ``[events]`` table: ``keep``, a duration of at least a minute."""
    if not isinstance(table, dict):
        raise ConfigError(f"{_where(path, text, 'events')}: events must be a table ([events])")
    for key in table:
        if key != "keep":
            raise ConfigError(
                f"{_where(path, text, key)}: unknown key {key!r} in [events] (known: keep)"
            )
    if "keep" not in table:
        return EventsConfig()
    try:
        keep = parse_duration(table["keep"])
    except ValueError as e:
        raise ConfigError(f"{_where(path, text, 'keep')}: events.keep: {e}") from e
    if keep < MIN_EVENTS_KEEP:
        raise ConfigError(
            f"{_where(path, text, 'keep')}: events.keep must be at least "
            f"{format_duration(MIN_EVENTS_KEEP)}, not {table['keep']!r}"
        )
    return EventsConfig(keep=keep)


def load_config(path: Path | None) -> ControlConfig:
    """Read `path`; without one, the default file if it exists, else all defaults."""
    if path is None:
        if not DEFAULT_CONFIG.exists():
            return ControlConfig()
        path = DEFAULT_CONFIG
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from e
    return parse_config(text, str(path))
