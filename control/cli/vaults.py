"""`edge-control vault ...` and `edge-control secret ...`: never print a secret value."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

import click

from control.cli.client import quote
from control.cli.support import Record, Row, call, emit, list_command, output_option, table


@click.group()
def vault() -> None:
    """Vaults of secrets, and the sites they are distributed to."""


@vault.command("create")
@click.argument("name")
@click.option("--distribute", required=True, help="label expression: sites that get the vault")
@click.option("--unseal", type=click.Choice(["local", "remote"]), default=None)
@click.option("--tenant", "tenant_name", default=None, help="the vault's tenant (system only)")
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
) -> None:
    """Create vault NAME (or change its distribution and unseal mode)."""
    body: dict[str, Any] = {"distribute": distribute}
    if unseal is not None:
        body["unseal"] = unseal
    if tenant_name is not None:
        body["tenant"] = tenant_name
    result = call(ctx, lambda c: c.put(f"/v1/vaults/{quote(name)}", body))
    verb = "created" if result.get("created") else "updated"
    emit(output, result, f"vault {result['name']} {verb} (tenant {result['tenant']})")


@list_command(
    vault, "/v1/vaults", "vaults", ["NAME", "TENANT", "DISTRIBUTE", "UNSEAL", "VERSION", "SECRETS"]
)
def vault_ls(v: Record) -> Row:
    """List vaults, their distribution and their secrets' names."""
    return (
        v["name"],
        v["tenant"],
        v["distribute"],
        v["unseal"],
        v["version"],
        ",".join(sorted(v["secrets"])) or "-",
    )


@vault.command("rm")
@click.argument("name")
@click.pass_context
def vault_rm(ctx: click.Context, /, name: str) -> None:
    """Delete vault NAME: every site removes it."""
    call(ctx, lambda c: c.delete(f"/v1/vaults/{quote(name)}"))
    click.echo(f"vault {name} deleted")


@click.group()
def secret() -> None:
    """Secrets in vaults (values go in, never come out)."""


def parse_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """``key=value``, ``key=@file`` (the file's bytes) and ``key=-`` (standard input: typed
    without echo on a terminal, else read to its end as it is) -> {key: value}.

    An error names the key and the problem, never a value."""
    data: dict[str, str] = {}
    from_stdin = [p.partition("=")[0] for p in pairs if p.partition("=")[2] == "-"]
    if len(from_stdin) > 1:
        raise click.ClickException(
            f"keys {', '.join(from_stdin)} all read standard input: give one of them as "
            "key=- and the others as key=@file"
        )
    for number, pair in enumerate(pairs, 1):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.ClickException(
                f"value {number} is not key=value, key=@file or key=- (standard input)"
            )
        if key in data:
            raise click.ClickException(f"key {key}: given twice")
        if value == "-":
            value = _read_stdin(key)
        elif value.startswith("@"):
            value = _text(key, value[1:], _read_file(key, value[1:]))
        if not value:
            raise click.ClickException(f"key {key}: the value is empty")
        data[key] = value
    return data


def _read_file(key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        raise click.ClickException(f"key {key}: cannot read {path}: {reason}") from None


def _read_stdin(key: str) -> str:
    if sys.stdin is None:
        raise click.ClickException(f"key {key}: there is no standard input to read")
    if sys.stdin.isatty():
        try:
            return getpass.getpass(f"value of {key}: ")
        except EOFError:
            raise click.ClickException(f"key {key}: no value was typed") from None
    return _text(key, "standard input", sys.stdin.buffer.read())


def _text(key: str, source: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise click.ClickException(
            f"key {key}: {source} is not UTF-8 text (secret values are text)"
        ) from None


@secret.command("put")
@click.argument("vault_name")
@click.argument("secret_name")
@click.argument("pairs", nargs=-1, required=True)
@click.pass_context
def secret_put(
    ctx: click.Context, /, vault_name: str, secret_name: str, pairs: tuple[str, ...]
) -> None:
    """Set secret SECRET_NAME in VAULT_NAME to key=value, key=@file or key=- pairs.

    key=@file takes the file's bytes; key=- reads standard input (without echo when it is a
    terminal): either keeps the value out of the process list and the shell's history."""
    data = parse_pairs(pairs)
    result = call(
        ctx,
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
@output_option
@click.pass_context
def secret_ls(ctx: click.Context, /, vault_name: str, output: str) -> None:
    """List the secrets of VAULT_NAME and their keys (never values)."""
    result = call(ctx, lambda c: c.get(f"/v1/vaults/{quote(vault_name)}"))
    rows = table(
        [(name, ",".join(keys)) for name, keys in sorted(result["secrets"].items())],
        ["SECRET", "KEYS"],
    )
    emit(output, {"vault": result["name"], "secrets": result["secrets"]}, rows)


@secret.command("rm")
@click.argument("vault_name")
@click.argument("secret_name")
@click.pass_context
def secret_rm(ctx: click.Context, /, vault_name: str, secret_name: str) -> None:
    """Revoke secret SECRET_NAME: sites remove it."""
    call(
        ctx,
        lambda c: c.delete(f"/v1/vaults/{quote(vault_name)}/secrets/{quote(secret_name)}"),
    )
    click.echo(f"secret {vault_name}/{secret_name} deleted")
