"""Shared pieces of the `edge-control` commands: options, the client, output helpers."""

from __future__ import annotations

import dataclasses
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
from enforcer.shared.cli_options import SharedGroup, SharedOption, shared_values

F = TypeVar("F", bound=Callable[..., Any])


class ControlGroup(SharedGroup):
    """The groups of `edge-control`: every command takes the connection options (and --config)
    before or after it, or from the environment."""

    shared = (
        SharedOption(
            "--config",
            "config_path",
            envvar="EDGEWARD_CONFIG",
            type=click.Path(dir_okay=False, path_type=Path),
            help="control.toml (default /etc/edgeward/control.toml)",
        ),
        SharedOption("--url", envvar="EDGEWARD_URL", help="control's URL (default: the local one)"),
        SharedOption(
            "--token",
            envvar="EDGEWARD_TOKEN",
            help="bearer token (default: the local control's admin-token)",
        ),
        SharedOption(
            "--ca",
            envvar="EDGEWARD_CA",
            type=click.Path(dir_okay=False, path_type=Path),
            help="control's CA certificate (default: the local control's ca.pem)",
        ),
    )


class Context:
    """The configuration (read when first needed) and the options the command was given."""

    def __init__(self, ctx: click.Context, state_dir: Path | None) -> None:
        self.given = shared_values(ctx)
        self.state_dir_override = state_dir
        self._config: ControlConfig | None = None

    @property
    def config(self) -> ControlConfig:
        if self._config is None:
            try:
                config = load_config(self.given.get("config_path"))
            except ConfigError as e:
                raise click.ClickException(str(e)) from e
            if self.state_dir_override is not None:
                config = dataclasses.replace(config, state_dir=self.state_dir_override)
            self._config = config
        return self._config

    def client(self) -> ControlClient:
        """A client of the control named by --url, --token and --ca; what is not given comes
        from the local control's configuration and state directory."""
        url: str | None = self.given.get("url")
        token: str | None = self.given.get("token")
        ca: Path | None = self.given.get("ca")
        if not url:
            url = self.config.url
        if token is None:
            path = self.config.state_dir / "admin-token"
            try:
                token = path.read_text().strip()
            except OSError:
                raise click.ClickException(
                    "no token: give --token or EDGEWARD_TOKEN (or run this on the control host "
                    f"as a user who can read {path})"
                ) from None
        if ca is None and (self.config.state_dir / "ca.pem").exists():
            ca = self.config.state_dir / "ca.pem"
        try:
            return ControlClient(Connection(url, token, ca))
        except ApiError as e:
            raise click.ClickException(str(e)) from e


def output_option(f: F) -> F:
    return click.option(
        "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
    )(f)


def call(ctx: click.Context, fn: Callable[[ControlClient], Any]) -> Any:
    """`fn` of a client of control; its errors become one line."""
    client = ctx.find_object(Context)
    assert client is not None
    try:
        return fn(client.client())
    except ApiError as e:
        raise click.ClickException(str(e)) from e


Record = dict[str, Any]
Row = Sequence[Any]


def list_command(
    group: click.Group, path: str, key: str, headers: Sequence[str]
) -> Callable[[Callable[[Record], Row]], click.Command]:
    """Makes `group ls` from a function of one record to its table row (its docstring is the
    help): GET `path`, then the list under `key` as a table or, with ``-o json``, as JSON."""

    def make(row: Callable[[Record], Row]) -> click.Command:
        @group.command("ls", help=row.__doc__)
        @output_option
        @click.pass_context
        def ls(ctx: click.Context, /, output: str) -> None:
            records = call(ctx, lambda c: c.get(path))[key]
            emit(output, records, table([row(r) for r in records], headers))

        return ls

    return make


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    text_rows = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *text_rows]
    )


def emit(output: str, value: Any, text: str) -> None:
    """`value` as JSON with ``-o json``, else `text` (a line or a `table`)."""
    click.echo(json.dumps(value, indent=2, sort_keys=True) if output == "json" else text)


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
