"""`edge-enforcer`: the daemon (`run`) and the site-local CLI (DESIGN.md, CLI).

The site-local commands talk to the running daemon through the socket named in the
configuration, with `enforcer.cli.client` (standard library only, so they start fast). Every error
is one line on stderr, ``edge-enforcer: error: ...`` (spec errors add one line per problem),
with exit code 1 and never a traceback; usage errors are click's, with exit code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click

from enforcer import __version__
from enforcer.api.documents import DocumentError, Format, parse_document
from enforcer.cli.client import Client, ClientError, EnforcerUnreachable
from enforcer.config.load import CONFIG_ENV, ConfigError, EnforcerConfig, load_config

__all__ = ["CliError", "main"]

PROG = "edge-enforcer"
log = logging.getLogger(__name__)


class CliError(click.ClickException):
    """One line on stderr, then `details` indented below it; exit code 1."""

    exit_code = 1

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = list(details)

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{PROG}: error: {self.message}", err=True)
        for line in self.details:
            click.echo(f"  {line}", err=True)


def _from_client_error(exc: ClientError, prefix: str = "") -> CliError:
    first, *rest = exc.message.splitlines() or [f"HTTP {exc.status}"]
    if exc.code == "invalid-spec":
        return CliError(f"{prefix}invalid application spec", [first, *rest])
    return CliError(prefix + first, rest)


class _Group(click.Group):
    """Turns every failure of a subcommand into a `CliError` line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ClientError as exc:
            raise _from_client_error(exc) from None
        except (EnforcerUnreachable, ConfigError) as exc:
            raise CliError(str(exc)) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click handles a closed stdout quietly
            where = f"{exc.filename}: " if exc.filename else ""
            raise CliError(f"{where}{(exc.strerror or str(exc)).lower()}") from None
        except Exception as exc:
            if logging.getLogger().handlers:  # the daemon set up logging: keep the traceback
                log.error("%s failed", ctx.invoked_subcommand, exc_info=True)
            raise CliError(f"unexpected error: {type(exc).__name__}: {exc}") from None


@dataclass
class _Options:
    config_path: Path | None
    state_dir: Path | None
    url: str | None = None
    token: str | None = None

    def config(self) -> EnforcerConfig:
        return load_config(self.config_path, state_dir=self.state_dir)

    def client(self) -> Client:
        token = self.token
        if token is not None and token.startswith("@"):
            try:
                token = Path(token[1:]).read_text().strip()
            except OSError as exc:
                raise CliError(f"cannot read the token file {token[1:]}: {exc.strerror}") from None
        if self.url:
            return Client(url=self.url, token=token)
        return Client(self.config().api.socket, token=token)


_output = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    help="The configuration file [default: /etc/edgeward/enforcer.toml; env EDGEWARD_CONFIG].",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Overrides state-dir of the configuration.",
)
@click.option(
    "--url",
    envvar="EDGEWARD_ENFORCER_URL",
    help="Reach the daemon over TCP (http://host:port) instead of its socket.",
)
@click.option(
    "--token",
    envvar="EDGEWARD_ENFORCER_TOKEN",
    help="Bearer token (a tenant's token sees only its tenant); @FILE reads it from a file.",
)
@click.version_option(__version__, prog_name=PROG)
@click.pass_context
def main(
    ctx: click.Context,
    config_path: Path | None,
    state_dir: Path | None,
    url: str | None,
    token: str | None,
) -> None:
    """Edgeward's enforcer: runs this site's containers on Docker.

    `run` is the daemon; the other commands talk to it through its local socket.
    """
    ctx.obj = _Options(config_path, state_dir, url, token)


@main.command()
@click.pass_obj
def run(opts: _Options) -> None:
    """Run the enforcer daemon (until SIGTERM or SIGINT)."""
    config = opts.config()
    try:
        from enforcer.daemon import run_daemon
    except ImportError as exc:
        raise CliError(f"the daemon cannot start: {exc}") from None
    run_daemon(config)


@main.command()
@click.argument("bundle")
@click.pass_obj
def enroll(opts: _Options, bundle: str) -> None:
    """Enroll this site with control.

    BUNDLE comes from `edge-control site token`; @FILE reads it from a file (@- from stdin).
    """
    config = opts.config()
    text = _read_text(bundle[1:]).strip() if bundle.startswith("@") else bundle.strip()
    if not text:
        raise CliError("the enrollment bundle is empty")
    from enforcer.link import enrollment

    try:
        identity = asyncio.run(enrollment.enroll(text, config.state_dir))
    except Exception as exc:
        raise CliError(f"enrollment failed: {exc}") from None
    site, url = getattr(identity, "site", ""), getattr(identity, "url", "")
    click.echo(f"enrolled as site {site} with control at {url}" if site else "enrolled")


@main.command()
@click.option(
    "-f",
    "--filename",
    "path",
    required=True,
    metavar="FILE",
    help="The application spec, YAML or JSON; - reads stdin.",
)
@click.pass_obj
def apply(opts: _Options, path: str) -> None:
    """Create or update a site-local application."""
    if path == "-":
        source, data = "<stdin>", sys.stdin.buffer.read()
    else:
        source, data = path, _read_bytes(path)
    fmt: Format = "json" if path.lower().endswith(".json") else "yaml"
    try:
        document = parse_document(data, fmt)
    except DocumentError as exc:
        raise CliError(f"{source}: {exc}") from None
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise CliError(f"{source}: the spec has no name")
    content_type = "application/json" if fmt == "json" else "application/yaml"
    try:
        record, created = opts.client().apply(name, data, content_type)
    except ClientError as exc:
        raise _from_client_error(exc, f"{source}: ") from None
    outcome = "created" if created else "configured" if record.get("changed") else "unchanged"
    click.echo(f"application {name} {outcome}")


@main.command("rm")
@click.argument("app")
@click.option("--purge", is_flag=True, help="Also remove its persistent volumes.")
@click.pass_obj
def remove(opts: _Options, app: str, purge: bool) -> None:
    """Remove an application and its instances."""
    opts.client().remove(app, purge)
    click.echo(f"application {app} removed" + (" (volumes purged)" if purge else ""))


@main.command()
@_output
@click.pass_obj
def ps(opts: _Options, output: str) -> None:
    """List service instances with their state and why."""
    instances = sorted(opts.client().instances(), key=lambda i: str(i.get("id", "")))
    if output == "json":
        _echo_json(instances)
        return
    now = time.time()
    rows = [
        [
            str(i.get("id", "")),
            str(i.get("app", "")),
            str(i.get("service", "")),
            str(i.get("host", "")),
            str(i.get("state", "")),
            "yes" if i.get("ready") else "no",
            str(i.get("restarts", 0)),
            _instance_reason(i, now),
        ]
        for i in instances
    ]
    headers = ["INSTANCE", "APP", "SERVICE", "HOST", "STATE", "READY", "RESTARTS", "REASON"]
    click.echo(_table(headers, rows))


def _instance_reason(instance: dict[str, Any], now: float) -> str:
    reason = str(instance.get("reason") or "")
    parts = [reason] if reason else []
    code = instance.get("last_exit_code")
    if code is not None and "exit code" not in reason:
        parts.append(f"exit code {code}")
    next_retry = instance.get("next_retry")
    if instance.get("state") == "backoff" and isinstance(next_retry, int | float):
        wait = next_retry - now
        parts.append(f"next retry in {_duration(wait)}" if wait >= 0.5 else "retrying now")
    return "; ".join(parts)


@main.command()
@click.argument("instance")
@click.option("-c", "--container", help="The container [default: the instance's first].")
@click.option("--tail", type=click.IntRange(min=0), help="Only the last N lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output.")
@click.pass_obj
def logs(
    opts: _Options, instance: str, container: str | None, tail: int | None, follow: bool
) -> None:
    """Print an instance's output."""
    out = sys.stdout.buffer
    with contextlib.closing(opts.client().logs(instance, container, tail, follow)) as chunks:
        for chunk in chunks:
            out.write(chunk)
            out.flush()


@main.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
@click.option("--since", type=click.IntRange(min=0), default=0, help="Only events after SEQ.")
@_output
@click.pass_obj
def events(opts: _Options, follow: bool, since: int, output: str) -> None:
    """Print events (one JSON object per line with -o json)."""
    with contextlib.closing(opts.client().events(since, follow)) as stream:
        for event in stream:
            if output == "json":
                click.echo(json.dumps(event))
            else:
                click.echo(_event_line(event))
            sys.stdout.flush()


def _event_line(event: dict[str, Any]) -> str:
    when = event.get("time")
    stamp = (
        datetime.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(when, int | float)
        else "-"
    )
    subject = event.get("instance") or event.get("app") or "-"
    return f"{stamp}  {event.get('kind', '')}  {subject}  {event.get('message', '')}"


@main.command()
@_output
@click.pass_obj
def devices(opts: _Options, output: str) -> None:
    """List this host's devices, GPUs and capacity."""
    host = opts.client().host()
    if output == "json":
        _echo_json(host)
        return
    inventory = host.get("devices")
    if isinstance(inventory, dict):
        device_list, gpus = inventory.get("devices") or [], inventory.get("gpus") or []
    else:
        device_list, gpus = inventory or [], host.get("gpus") or []
    labels = host.get("labels") or {}
    click.echo(f"host {host.get('id', '?')}  " + (_labels(labels) if labels else "(no labels)"))
    click.echo("")
    if device_list:
        rows = [
            [
                str(d.get("node") or d.get("path") or "-"),
                str(d.get("subsystem", "")),
                ",".join(str(label) for label in d.get("labels") or []) or "-",
            ]
            for d in device_list
            if isinstance(d, dict)
        ]
        click.echo(_table(["DEVICE", "SUBSYSTEM", "LABELS"], rows))
    else:
        click.echo("no labelled devices")
    click.echo("")
    if gpus:
        rows = [
            [
                str(g.get("index", "")),
                str(g.get("vendor", "")),
                str(g.get("model", "")),
                _size(g.get("memory")),
                ",".join(str(n) for n in g.get("nodes") or []),
            ]
            for g in gpus
            if isinstance(g, dict)
        ]
        click.echo(_table(["GPU", "VENDOR", "MODEL", "MEMORY", "NODES"], rows))
    else:
        click.echo("no GPUs")
    capacity = host.get("capacity")
    if not isinstance(capacity, dict):
        capacity = {"cpus": host.get("cpus"), "memory": host.get("memory")}
    click.echo("")
    click.echo(
        f"capacity: {capacity.get('cpus', '?')} cpus, {_size(capacity.get('memory'))} memory, "
        f"{len(gpus)} GPUs"
    )


@main.command()
@click.option("--check", is_flag=True, help="Exit with 1 when the enforcer is unhealthy.")
@_output
@click.pass_obj
def status(opts: _Options, check: bool, output: str) -> None:
    """Show the site, its leader, the control link and the runtime."""
    client = opts.client()
    health = client.health()
    site = client.site()
    healthy = bool(health.get("healthy"))
    if output == "json":
        _echo_json({"site": site, "health": health})
    else:
        labels = site.get("labels") or {}
        hosts = site.get("hosts") or []
        lines = [
            ("site", f"{site.get('name', '?')}" + (f"  {_labels(labels)}" if labels else "")),
            ("hosts", ", ".join(str(h) for h in hosts) if isinstance(hosts, list) else str(hosts)),
            ("leader", str(site.get("leader") or "none")),
            ("control", _describe(site.get("control"))),
            ("runtime", str(health.get("runtime", "?"))),
            ("healthy", "yes" if healthy else "no"),
        ]
        checks = health.get("checks")
        if isinstance(checks, dict):
            lines += [(f"  {name}", _describe(value)) for name, value in checks.items()]
        width = max(len(key) for key, _ in lines) + 2
        for key, value in lines:
            click.echo(f"{key + ':':<{width}}{value}")
    if check and not healthy:
        raise CliError(f"unhealthy: {_unhealthy_reason(health)}")


def _unhealthy_reason(health: dict[str, Any]) -> str:
    runtime = str(health.get("runtime", ""))
    if runtime and runtime != "available":
        return f"runtime {runtime}"
    checks = health.get("checks")
    if isinstance(checks, dict):
        bad = [
            f"{name} {value}"
            for name, value in checks.items()
            if value not in ("ok", "available", "enforced", True)
        ]
        if bad:
            return "; ".join(bad)
    return str(health.get("reason") or "the enforcer reports itself unhealthy")


# --- small helpers ----------------------------------------------------------------------------


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {(exc.strerror or str(exc)).lower()}") from None


def _read_text(path: str) -> str:
    data = sys.stdin.buffer.read() if path == "-" else _read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text") from None


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def _labels(labels: Any) -> str:
    if not isinstance(labels, dict):
        return str(labels)
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _describe(value: Any) -> str:
    """A status value in one line: text as is, a mapping as ``state (k=v, ...)``."""
    if isinstance(value, dict):
        head = value.get("state") or value.get("status")
        rest = ", ".join(f"{k}={v}" for k, v in value.items() if k not in ("state", "status"))
        if head is None:
            return rest or "-"
        return f"{head} ({rest})" if rest else str(head)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _duration(seconds: float) -> str:
    """4s, 2m5s, 1h3m, 2d3h."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60}m" if s % 3600 >= 60 else f"{s // 3600}h"
    return f"{s // 86400}d{s % 86400 // 3600}h" if s % 86400 >= 3600 else f"{s // 86400}d"


def _size(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return "?"
    for unit, factor in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if value >= factor:
            amount = value / factor
            return f"{amount:.0f}{unit}" if amount >= 10 else f"{amount:.1f}{unit}"
    return f"{value}B"


if __name__ == "__main__":
    main()
