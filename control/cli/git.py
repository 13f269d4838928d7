"""`edge-control git ...`: Git sources that control follows (docs/git-sources.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from control.cli.client import quote
from control.cli.support import Record, Row, ago, call, emit, list_command, output_option
from control.cli.support import table as make_table


@click.group("git")
def git() -> None:
    """Git sources: control applies the specs under a path of a branch."""


def _read_secret(path: Path, what: str) -> str:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not text"
        raise click.ClickException(f"{what} {path}: {reason}") from e
    if not text.strip():
        raise click.ClickException(f"{what} {path}: the file is empty")
    return text.strip() if what == "--token-file" else text


@git.command("add")
@click.argument("name")
@click.argument("repo_url")
@click.option("--branch", required=True, help="the branch to follow")
@click.option("--path", "path", default="", help="the directory of the specs (default: all)")
@click.option("--tenant", "tenant_name", default=None, help="apply as this tenant (default: yours)")
@click.option("--interval", default="30s", show_default=True, help="how often to poll")
@click.option("--no-prune", is_flag=True, help="keep what a removed file made")
@click.option("--token-file", type=click.Path(path_type=Path), help="HTTPS token, read from a file")
@click.option("--ssh-key-file", type=click.Path(path_type=Path), help="SSH deploy key (private)")
@click.option(
    "--ca-file", type=click.Path(path_type=Path), help="HTTPS: the CA certificates to trust (PEM)"
)
@output_option
@click.pass_context
def git_add(
    ctx: click.Context,
    /,
    name: str,
    repo_url: str,
    branch: str,
    path: str,
    tenant_name: str | None,
    interval: str,
    no_prune: bool,
    token_file: Path | None,
    ssh_key_file: Path | None,
    ca_file: Path | None,
    output: str,
) -> None:
    """Follow branch --branch of the repository at REPO_URL as source NAME."""
    if token_file is not None and ssh_key_file is not None:
        raise click.ClickException("give --token-file or --ssh-key-file, not both")
    body: dict[str, Any] = {
        "url": repo_url,
        "branch": branch,
        "path": path,
        "interval": interval,
        "prune": not no_prune,
    }
    if tenant_name is not None:
        body["tenant"] = tenant_name
    if token_file is not None:
        body["token"] = _read_secret(token_file, "--token-file")
    if ssh_key_file is not None:
        body["ssh-key"] = _read_secret(ssh_key_file, "--ssh-key-file")
    if ca_file is not None:
        body["ca"] = _read_secret(ca_file, "--ca-file")
    result = call(ctx, lambda c: c.put(f"/v1/git-sources/{quote(name)}", body))
    base: str = call(ctx, lambda c: c.connection.url)
    result["hook-url"] = base.rstrip("/") + result["hook-path"]
    emit(
        output,
        result,
        f"git source {result['name']} added (tenant {result['tenant']}, every "
        f"{result['interval']:g}s)\nhook: POST {result['hook-url']} with the secret "
        f"{result['hook-secret']} (shown once)",
    )


def _short(commit: str) -> str:
    return commit[:12] if commit else "-"


@list_command(
    git,
    "/v1/git-sources",
    "git-sources",
    ["NAME", "TENANT", "URL", "BRANCH", "PATH", "INTERVAL", "PRUNE", "APPLIED"],
)
def git_ls(r: Record) -> Row:
    """List Git sources."""
    return (
        r["name"],
        r["tenant"],
        r["url"],
        r["branch"],
        r["path"] or "/",
        f"{r['interval']:g}s",
        "yes" if r["prune"] else "no",
        _short(r["applied-commit"]),
    )


@git.command("status")
@click.argument("name", required=False)
@output_option
@click.pass_context
def git_status(ctx: click.Context, /, name: str | None, output: str) -> None:
    """The last applied and last seen commit of each source (or NAME), and why that one was
    not applied: every error with its file and path."""
    if name is None:
        records = call(ctx, lambda c: c.get("/v1/git-sources"))["git-sources"]
        rows = [
            (
                r["name"],
                _short(r["applied-commit"]),
                ago(r["applied-at"]),
                _short(r["seen-commit"]),
                r["problem"] or "-",
            )
            for r in records
        ]
        emit(output, records, make_table(rows, ["NAME", "APPLIED", "WHEN", "SEEN", "PROBLEM"]))
        return
    r = call(ctx, lambda c: c.get(f"/v1/git-sources/{quote(name)}"))
    lines = [
        f"source:   {r['name']} (tenant {r['tenant']})",
        f"follows:  {r['url']} branch {r['branch']} path {r['path'] or '/'}, every "
        f"{r['interval']:g}s, pruning {'on' if r['prune'] else 'off'}",
        f"applied:  {_short(r['applied-commit'])} ({ago(r['applied-at'])})",
        f"seen:     {_short(r['seen-commit'])} ({ago(r['seen-at'])})",
    ]
    if r["problem"]:
        lines.append(f"not applied: {r['problem']}")
    for e in r["errors"]:
        where = ": ".join(p for p in (e["file"], e["path"]) if p)
        lines.append(f"  {where}: {e['message']}" if where else f"  {e['message']}")
    emit(output, r, "\n".join(lines))


@git.command("rm")
@click.argument("name")
@click.pass_context
def git_rm(ctx: click.Context, /, name: str) -> None:
    """Stop following source NAME: what it applied stays, editable by hand again."""
    call(ctx, lambda c: c.delete(f"/v1/git-sources/{quote(name)}"))
    click.echo(f"git source {name} removed (what it applied stays)")
