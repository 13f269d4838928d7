"""`edge-control`: the central service (``serve``) and the operator commands (DESIGN.md, "CLI").

Operator commands take ``--url``, ``--token`` and ``--ca`` before or after the command (or
EDGEWARD_URL, EDGEWARD_TOKEN, EDGEWARD_CA; see `enforcer.shared.cli_options`); on the control
host they default to the local control's URL, admin token and CA.
Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import click
import yaml

from control.cli.client import quote
from control.cli.compose import app_convert, converted, name_option
from control.cli.db import db
from control.cli.deployments import deploy, deployment
from control.cli.events import events, logs
from control.cli.git import git
from control.cli.support import (
    Context,
    ControlGroup,
    Record,
    Row,
    ago,
    call,
    emit,
    list_command,
    output_option,
    read_document,
)
from control.cli.vaults import secret, vault
from control.config import ControlConfig
from enforcer.shared.cli_options import not_taking
from enforcer.shared.labels import LabelSyntaxError, parse_labels
from enforcer.shared.units import parse_duration


@click.group(cls=ControlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="state directory (overrides state-dir in the config)",
)
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.pass_context
def cli(ctx: click.Context, /, state_dir: Path | None, verbose: bool) -> None:
    """Edgeward control: the central service and its operator commands.

    --config, --url, --token and --ca go before or after the command."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = Context(ctx, state_dir)


@cli.command()
@click.option(
    "--max-concurrent",
    type=click.IntRange(1),
    default=2048,
    show_default=True,
    help="status batches and enrollments in progress before control answers 503 with Retry-After",
)
@click.pass_context
@not_taking("url", "token", "ca")
def serve(ctx: click.Context, /, max_concurrent: int) -> None:
    """Run the control service."""
    from control.server import StartupError
    from control.server import serve as run_server

    config: ControlConfig = ctx.obj.config
    try:
        asyncio.run(run_server(config, max_concurrent=max_concurrent))
    except StartupError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:
        pass


# --- tenants and tokens ---------------------------------------------------------------------


@cli.group()
def tenant() -> None:
    """Tenants."""


@tenant.command("create")
@click.argument("name")
@click.option("--parent", help="parent tenant (default: the token's tenant)")
@click.option("--quota", default=None, help="per site: cpus=2,memory=1Gi,gpus=0")
@output_option
@click.pass_context
def tenant_create(
    ctx: click.Context,
    /,
    name: str,
    parent: str | None,
    quota: str | None,
    output: str,
) -> None:
    """Create tenant NAME."""
    body = {"name": name, "parent": parent, "quota": quota}
    result = call(ctx, lambda c: c.post("/v1/tenants", body))
    emit(output, result, f"tenant {result['name']} created under {result['parent']}")


@list_command(tenant, "/v1/tenants", "tenants", ["NAME", "PARENT"])
def tenant_ls(t: Record) -> Row:
    """List tenants."""
    return (t["name"], t["parent"] or "-")


@cli.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--tenant", "tenant_name", required=True, help="the token's tenant")
@output_option
@click.pass_context
def token_create(ctx: click.Context, /, tenant_name: str, output: str) -> None:
    """Create a token for a tenant; it is printed once."""
    result = call(ctx, lambda c: c.post("/v1/tokens", {"tenant": tenant_name}))
    emit(output, result, result["token"])


# --- sites ----------------------------------------------------------------------------------


@cli.group()
def site() -> None:
    """Sites: enrollment bundles, labels, tenants."""


@site.command("token")
@click.option("--name", required=True, help="the site's name")
@click.option("--labels", default=None, help="k=v,k2=v2")
@click.option("--ttl", default="24h", show_default=True, help="how long the bundle works")
@output_option
@click.pass_context
def site_token(ctx: click.Context, /, name: str, labels: str | None, ttl: str, output: str) -> None:
    """Print a one-time enrollment bundle for site NAME."""
    try:
        parsed = parse_labels(labels) if labels is not None else None
        seconds = parse_duration(ttl)
    except LabelSyntaxError as e:
        raise click.ClickException(f"--labels: {e}") from e
    except ValueError as e:
        raise click.ClickException(f"--ttl: {e}") from e
    body = {"site": name, "labels": parsed, "ttl": seconds}
    result = call(ctx, lambda c: c.post("/v1/enrollment/tokens", body))
    emit(output, result, result["bundle"])


@list_command(
    site, "/v1/sites", "sites", ["NAME", "STATE", "LABELS", "TENANTS", "IN-SYNC", "CONTACT"]
)
def site_ls(s: Record) -> Row:
    """List sites."""
    labels = ",".join(
        f"{k}={v}" for k, v in sorted(s["labels"].items()) if not k.startswith("system/")
    )
    return (
        s["name"],
        s["state"],
        labels or "-",
        ",".join(s["tenants"]) or "-",
        "yes" if s["in_sync"] else "no",
        "connected" if s["connected"] else ago(s["last_contact"]),
    )


@site.command("label")
@click.argument("site_name")
@click.argument("changes", nargs=-1, required=True)
@output_option
@click.pass_context
def site_label(
    ctx: click.Context, /, site_name: str, changes: tuple[str, ...], output: str
) -> None:
    """Set labels (k=v) or remove them (k-) on SITE."""
    patch: dict[str, str | None] = {}
    for change in changes:
        if change.endswith("-") and "=" not in change:
            patch[change[:-1]] = None
            continue
        try:
            patch.update(parse_labels(change))
        except LabelSyntaxError as e:
            raise click.ClickException(f"{change!r}: {e.message}") from e
    result = call(ctx, lambda c: c.patch(f"/v1/sites/{quote(site_name)}", {"labels": patch}))
    labels = ",".join(f"{k}={v}" for k, v in sorted(result["labels"].items()))
    emit(output, result, f"site {site_name}: {labels}")


@site.command("assign")
@click.argument("site_name")
@click.argument("tenant_name")
@click.pass_context
def site_assign(ctx: click.Context, /, site_name: str, tenant_name: str) -> None:
    """Assign SITE to TENANT."""
    call(ctx, lambda c: c.post(f"/v1/sites/{quote(site_name)}/assign", {"tenant": tenant_name}))
    click.echo(f"site {site_name} assigned to tenant {tenant_name}")


@site.command("revoke")
@click.argument("site_name")
@click.pass_context
def site_revoke(ctx: click.Context, /, site_name: str) -> None:
    """Revoke SITE's certificate: it can no longer sync until it enrolls again."""
    call(ctx, lambda c: c.post(f"/v1/sites/{quote(site_name)}/revoke", {}))
    click.echo(f"site {site_name} revoked")


# --- applications and deployments -----------------------------------------------------------


@cli.group()
def app() -> None:
    """Applications and their versions."""


@app.command("push")
@click.option("-f", "--file", "path", required=True, type=click.Path(path_type=Path))
@name_option
@output_option
@click.pass_context
def app_push(ctx: click.Context, /, path: Path, name: str | None, output: str) -> None:
    """Push an application version (a version is immutable); a Compose file is converted."""
    doc = converted(path, read_document(path), name)
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("name"), str)
        or not isinstance(doc.get("version"), str | int | float)
    ):
        raise click.ClickException(f"{path}: the spec needs a name and a version")
    name, version = doc["name"], str(doc["version"])
    result = call(
        ctx, lambda c: c.put(f"/v1/applications/{quote(name)}/versions/{quote(version)}", doc)
    )
    state = "pushed" if result["created"] else "unchanged (already pushed)"
    emit(output, result, f"application {name} version {version} {state}")


app.add_command(app_convert)


@list_command(app, "/v1/applications", "applications", ["NAME", "TENANT", "LATEST", "VERSIONS"])
def app_ls(a: Record) -> Row:
    """List applications."""
    return (a["name"], a["tenant"], a["latest"], ", ".join(a["versions"]))


@app.command("show")
@click.argument("name")
@click.option("--version", default=None, help="a version (default: the latest)")
@output_option
@click.pass_context
def app_show(ctx: click.Context, /, name: str, version: str | None, output: str) -> None:
    """Show an application's spec."""
    result = call(
        ctx,
        lambda c: c.get(f"/v1/applications/{quote(name)}/versions/{quote(version or 'latest')}"),
    )
    spec = yaml.safe_dump(result["spec"], sort_keys=False).rstrip()
    head = f"# {result['name']} {result['version']} (tenant {result['tenant']})"
    emit(output, result, f"{head}\n{spec}")


cli.add_command(deploy)
cli.add_command(deployment)
cli.add_command(db)
cli.add_command(vault)
cli.add_command(secret)
cli.add_command(events)
cli.add_command(logs)
cli.add_command(git)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="edge-control",
            standalone_mode=False,
        )
    except click.ClickException as e:
        click.echo(f"edge-control: {e.format_message()}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("edge-control: aborted", err=True)
        return 1
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
