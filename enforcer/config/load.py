"""Reading `enforcer.toml` (DESIGN.md, Configuration) into `enforcer.config.model`'s dataclasses.

Every key has a default, so an empty file (or none at the default path) is a valid
configuration. Unknown keys and values of the wrong type are `ConfigError`s that name the file
and the line. `load_config` resolves every derived default (the token file, the host id, the
site name), so the daemon sees concrete values only.
"""

from __future__ import annotations

import os
import secrets
import socket
import tomllib
from dataclasses import replace
from pathlib import Path

from enforcer.config.model import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    TOKEN_FILE_NAME,
    ConfigError,
    EnforcerConfig,
)
from enforcer.config.reader import Reader, os_reason

__all__ = ["ensure_api_token", "load_config", "parse_config"]


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
        raise ConfigError(f"{path}: cannot read: {os_reason(exc)}") from None
    return parse_config(text, path, state_dir=state_dir)


def parse_config(text: str, path: Path, *, state_dir: Path | None = None) -> EnforcerConfig:
    """Parse `text` read from `path` (used in messages). Raises ConfigError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    reader = Reader(path, text)
    config = reader.config(data)
    return _finish(replace(config, source=path), reader.token_file, state_dir)


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
        raise ConfigError(f"{path}: cannot read the API token: {os_reason(exc)}") from None
    if not token:
        raise ConfigError(f"{path}: the API token file is empty")
    return token


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
