"""`edge-control vault ...` and `edge-control secret ...`: never print a secret value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from control.cli.client import quote
from control.cli.support import call, connection_options, echo_json, output_option, table


@click.group()
def vault() -> None:
    """Vaults of secrets, and the sites they are distributed to."""


@vault.command("create")
@click.argument("name")
@click.option("--distribute", required=True, help="label expression: sites that get the vault")
@click.option("--unseal", type=click.Choice(["local", "remote"]), default=None)
@click.option("--tenant", "tenant_name", default=None, help="the vault's tenant (system only)")
@connection_options
@output_option
@click.pass_context
def vault_create(
    ctx: click.Context,
    /,
    name: str,
    distribute: str,
    unseal: str | None,
    tenant_name: str | None,
    output: str,
    **conn: Any,
) -> None:
    """Create vault NAME (or change its distribution and unseal mode)."""
    body: dict[str, Any] = {"distribute": distribute}
    if unseal is not None:
        body["unseal"] = unseal
    if tenant_name is not None:
        body["tenant"] = tenant_name
    result = call(ctx, conn, lambda c: c.put(f"/v1/vaults/{quote(name)}", body))
    if output == "json":
        echo_json(result)
    else:
        verb = "created" if result.get("created") else "updated"
        click.echo(f"vault {result['name']} {verb} (tenant {result['tenant']})")


@vault.command("ls")
@connection_options
@output_option
@click.pass_context
def vault_ls(ctx: click.Context, /, output: str, **conn: Any) -> None:
    """List vaults, their distribution and their secrets' names."""
    result = call(ctx, conn, lambda c: c.get("/v1/vaults"))["vaults"]
    if output == "json":
        echo_json(result)
        return
    table(
        [
            (
                v["name"],
                v["tenant"],
                v["distribute"],
                v["unseal"],
                v["version"],
                ",".join(sorted(v["secrets"])) or "-",
            )
            for v in result
        ],
        ["NAME", "TENANT", "DISTRIBUTE", "UNSEAL", "VERSION", "SECRETS"],
    )


@vault.command("rm")
@click.argument("name")
@connection_options
@click.pass_context
def vault_rm(ctx: click.Context, /, name: str, **conn: Any) -> None:
    """Delete vault NAME: every site removes it."""
    call(ctx, conn, lambda c: c.delete(f"/v1/vaults/{quote(name)}"))
    click.echo(f"vault {name} deleted")


@click.group()
def secret() -> None:
    """Secrets in vaults (values go in, never come out)."""


def parse_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """``key=value`` and ``key=@file`` (the file's contents) -> {key: value}."""
    data: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.ClickException(f"{key or pair!r}: give key=value or key=@file")
        if value.startswith("@"):
            path = Path(value[1:])
            try:
                value = path.read_text()
            except (OSError, UnicodeDecodeError) as e:
                raise click.ClickException(f"key {key}: cannot read {path}: {e}") from e
        data[key] = value
    return data


@secret.command("put")
@click.argument("vault_name")
@click.argument("secret_name")
@click.argument("pairs", nargs=-1, required=True)
@connection_options
@click.pass_context
def secret_put(
    ctx: click.Context, /, vault_name: str, secret_name: str, pairs: tuple[str, ...], **conn: Any
) -> None:
    """Set secret SECRET_NAME in VAULT_NAME to key=value or key=@file pairs."""
    data = parse_pairs(pairs)
    result = call(
        ctx,
        conn,
        lambda c: c.put(
            f"/v1/vaults/{quote(vault_name)}/secrets/{quote(secret_name)}", {"data": data}
        ),
    )
    click.echo(
        f"secret {vault_name}/{secret_name} set: keys {', '.join(result['keys'])} "
        f"(vault version {result['version']})"
    )


@secret.command("ls")
@click.argument("vault_name")
@connection_options
@output_option
@click.pass_context
def secret_ls(ctx: click.Context, /, vault_name: str, output: str, **conn: Any) -> None:
    """List the secrets of VAULT_NAME and their keys (never values)."""
    result = call(ctx, conn, lambda c: c.get(f"/v1/vaults/{quote(vault_name)}"))
    if output == "json":
        echo_json({"vault": result["name"], "secrets": result["secrets"]})
        return
    table(
        [(name, ",".join(keys)) for name, keys in sorted(result["secrets"].items())],
        ["SECRET", "KEYS"],
    )


@secret.command("rm")
@click.argument("vault_name")
@click.argument("secret_name")
@connection_options
@click.pass_context
def secret_rm(ctx: click.Context, /, vault_name: str, secret_name: str, **conn: Any) -> None:
    """Revoke secret SECRET_NAME: sites remove it."""
    call(
        ctx,
        conn,
        lambda c: c.delete(f"/v1/vaults/{quote(vault_name)}/secrets/{quote(secret_name)}"),
    )
    click.echo(f"secret {vault_name}/{secret_name} deleted")
