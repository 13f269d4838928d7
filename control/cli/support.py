"""Shared pieces of the `edge-control` commands: options, the client, output helpers."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from control.cli.client import ApiError, Connection, ControlClient
from control.config import ConfigError, ControlConfig, load_config

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    def __init__(self, config_path: Path | None, state_dir: Path | None) -> None:
        self.config_path = config_path
        self.state_dir_override = state_dir
        self._config: ControlConfig | None = None

    @property
    def config(self) -> ControlConfig:
        if self._config is None:
            try:
                config = load_config(self.config_path)
            except ConfigError as e:
                raise click.ClickException(str(e)) from e
            if self.state_dir_override is not None:
                config = ControlConfig(
                    state_dir=self.state_dir_override,
                    listen=config.listen,
                    public_url=config.public_url,
                    database=config.database,
                )
            self._config = config
        return self._config


def connection_options(f: F) -> F:
    f = click.option(
        "--ca",
        envvar="EDGEWARD_CA",
        type=click.Path(dir_okay=False, path_type=Path),
        help="control's CA certificate (default: the local control's ca.pem)",
    )(f)
    f = click.option(
        "--token",
        envvar="EDGEWARD_TOKEN",
        help="bearer token (default: the local control's admin-token)",
    )(f)
    f = click.option(
        "--url", envvar="EDGEWARD_URL", help="control's URL (default: the local control's)"
    )(f)
    return f


def output_option(f: F) -> F:
    return click.option(
        "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
    )(f)


def make_client(
    ctx: click.Context, url: str | None, token: str | None, ca: Path | None
) -> ControlClient:
    obj: Context = ctx.find_object(Context)  # type: ignore[assignment]
    local = obj.config
    state_dir = local.state_dir
    if not url:
        url = local.url
    if token is None:
        try:
            token = (state_dir / "admin-token").read_text().strip()
        except OSError:
            raise click.ClickException(
                "no token: give --token or EDGEWARD_TOKEN (or run this on the control host "
                f"as a user who can read {state_dir / 'admin-token'})"
            ) from None
    if ca is None and (state_dir / "ca.pem").exists():
        ca = state_dir / "ca.pem"
    try:
        return ControlClient(Connection(url, token, ca))
    except ApiError as e:
        raise click.ClickException(str(e)) from e


def call(ctx: click.Context, options: dict[str, Any], fn: Callable[[ControlClient], Any]) -> Any:
    client = make_client(ctx, options.get("url"), options.get("token"), options.get("ca"))
    try:
        return fn(client)
    except ApiError as e:
        raise click.ClickException(str(e)) from e


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    text_rows = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(headers)]
    for row in [list(headers), *text_rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def ago(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    seconds = max(0, int(time.time() - timestamp))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    if seconds < 172800:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def read_document(path: Path) -> Any:
    try:
        text = path.read_text() if str(path) != "-" else sys.stdin.read()
    except OSError as e:
        raise click.ClickException(f"{path}: {e.strerror}") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise click.ClickException(f"{path}{where}: not valid YAML or JSON") from e
