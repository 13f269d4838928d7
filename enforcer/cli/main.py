"""`edge-enforcer`: the daemon (`run`) and the site-local CLI (DESIGN.md, CLI).

The site-local commands talk to the running daemon through the socket named in the
configuration (or over TCP with --url and --token), with `enforcer.cli.client`. The connection
options go before or after the command, or come from the environment (`SharedGroup`). Every error
is one line on stderr, ``edge-enforcer: error: ...`` (spec errors add one line per problem),
with exit code 1 and never a traceback; usage errors are click's, with exit code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import click

from enforcer import __version__
from enforcer.api.documents import DocumentError, Format, parse_document
from enforcer.cli.client import Client, ClientError, EnforcerUnreachable
from enforcer.cli.render import describe, event_line, host_text, instance_table, labels_text
from enforcer.config.load import load_config
from enforcer.config.model import CONFIG_ENV, ConfigError, EnforcerConfig
from enforcer.shared.cli_options import SharedGroup, SharedOption, not_taking, shared_values
from enforcer.shared.spec.compose import ComposeError, is_compose
from enforcer.shared.spec.compose_load import convert_file
from enforcer.shared.spec.validate import validate_application

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


class _Group(SharedGroup):
    """Takes the connection options before or after every command; turns every failure of a
    subcommand into a `CliError` line."""

    shared = (
        SharedOption(
            "--config",
            "config_path",
            envvar=CONFIG_ENV,
            type=click.Path(dir_okay=False, path_type=Path),
            help="The configuration file [default: /etc/edgeward/enforcer.toml].",
        ),
        SharedOption(
            "--url",
            envvar="EDGEWARD_URL",
            help="Reach the daemon over TCP (http://host:port) instead of its socket.",
        ),
        SharedOption(
            "--token",
            envvar="EDGEWARD_TOKEN",
            help="Bearer token (a tenant's token sees only its tenant); @FILE reads it from a file",
        ),
        SharedOption(
            "--ca",
            envvar="EDGEWARD_CA",
            type=click.Path(dir_okay=False, path_type=Path),
            help="The certificate to trust for an https --url (the daemon's api-tls/cert.pem).",
        ),
    )

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


class _Options:
    """What the commands need: the configuration and a client, from the shared options."""

    def __init__(self, ctx: click.Context, state_dir: Path | None) -> None:
        self.given = shared_values(ctx)
        self.state_dir = state_dir

    def config(self) -> EnforcerConfig:
        return load_config(self.given.get("config_path"), state_dir=self.state_dir)

    def client(self) -> Client:
        token: str | None = self.given.get("token")
        if token is not None and token.startswith("@"):
            try:
                token = Path(token[1:]).read_text().strip()
            except OSError as exc:
                raise CliError(f"cannot read the token file {token[1:]}: {exc.strerror}") from None
        url: str | None = self.given.get("url")
        if url:
            return Client(url=url, token=token, ca=self.given.get("ca"))
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
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Overrides state-dir of the configuration.",
)
@click.version_option(__version__, prog_name=PROG)
@click.pass_context
def main(ctx: click.Context, state_dir: Path | None) -> None:
    """Edgeward's enforcer: runs this site's containers on Docker.

    `run` is the daemon; the other commands talk to it through its local socket (or --url).
    --config, --url and --token go before or after the command.
    """
    ctx.obj = _Options(ctx, state_dir)


@main.command()
@click.pass_obj
@not_taking("url", "token", "ca")
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
    try:  # a running daemon enrolls itself and starts syncing at once
        answer = opts.client().enroll(text)
    except EnforcerUnreachable:
        answer = None
    except ClientError as exc:
        raise _from_client_error(exc) from None
    if answer is not None:
        click.echo(f"enrolled as site {answer.get('site')} with control at {answer.get('control')}")
        return
    from enforcer.link import enrollment

    identity = enrollment.load_site_identity(config.state_dir)
    if identity is not None:
        raise CliError(
            f"this site is enrolled already, as {identity.site} with control at {identity.url}"
        )
    try:
        identity = asyncio.run(enrollment.enroll(text, config.state_dir))
    except Exception as exc:
        raise CliError(f"enrollment failed: {exc}") from None
    click.echo(f"enrolled as site {identity.site} with control at {identity.url}")


@main.command()
@click.option(
    "-f",
    "--filename",
    "path",
    required=True,
    metavar="FILE",
    help="The application spec, YAML or JSON, or a Compose file; - reads stdin.",
)
@click.option(
    "--name",
    default=None,
    metavar="NAME",
    help="A Compose file's application name (default: its name:, else its directory's name).",
)
@click.pass_obj
def apply(opts: _Options, path: str, name: str | None) -> None:
    """Create or update a site-local application (a Compose file is converted)."""
    if path == "-":
        source, data = "<stdin>", sys.stdin.buffer.read()
    else:
        source, data = path, _read_bytes(path)
    fmt: Format = "json" if path.lower().endswith(".json") else "yaml"
    try:
        document = parse_document(data, fmt)
    except DocumentError as exc:
        raise CliError(f"{source}: {exc}") from None
    if is_compose(document) or name is not None:
        document = _converted(source, path, document, name)
        data, fmt = json.dumps(document).encode(), "json"
    name = document.get("name")
    if not isinstance(name, str) or not name:
        problems = "".join(f"\n{e}" for e in validate_application(document)[1])
        raise CliError(f"{source}: the spec has no name{problems}")
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
    click.echo(instance_table(instances, time.time()))


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
                click.echo(event_line(event))
            sys.stdout.flush()


@main.command()
@_output
@click.pass_obj
def devices(opts: _Options, output: str) -> None:
    """List this host's devices, GPUs and capacity."""
    host = opts.client().host()
    if output == "json":
        _echo_json(host)
        return
    click.echo(host_text(host))


def _host(host: Any) -> str:
    """A member of the site: ``id (role, state)``."""
    if isinstance(host, dict):
        return f"{host.get('id')} ({host.get('role', '?')}, {host.get('state', '?')})"
    return str(host)


def _link(link: Any) -> str:
    """The control link in its own words (its one-line description) when it has them."""
    if isinstance(link, dict) and isinstance(link.get("description"), str):
        return str(link["description"])
    return describe(link)


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
            ("site", f"{site.get('name', '?')}" + (f"  {labels_text(labels)}" if labels else "")),
            (
                "hosts",
                ", ".join(_host(h) for h in hosts) if isinstance(hosts, list) else str(hosts),
            ),
            ("leader", str(site.get("leader") or "none")),
            ("control", _link(site.get("control"))),
            ("store", describe(site.get("store"))),
            ("runtime", str(health.get("runtime", "?"))),
            ("healthy", "yes" if healthy else "no"),
        ]
        checks = health.get("checks")
        if isinstance(checks, dict):
            lines += [(f"  {name}", describe(value)) for name, value in checks.items()]
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


def _converted(source: str, path: str, document: dict[str, Any], name: str | None) -> Any:
    """The spec that Compose file `document` converts to (notes and warnings on stderr)."""
    if not is_compose(document):
        raise CliError(f"{source}: --name is for Compose files (a spec has name:)")
    try:
        conversion, notes = convert_file(document, path, name=name)
    except ComposeError as exc:
        raise CliError(f"{source}: the Compose file cannot be converted", exc.errors) from None
    for line in notes:
        click.echo(f"{PROG}: note: {line}", err=True)
    for line in conversion.warnings:
        click.echo(f"{PROG}: warning: {line}", err=True)
    return conversion.document


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


from enforcer.cli.site import site  # noqa: E402  (the `site` group)

main.add_command(site)

if __name__ == "__main__":
    main()
