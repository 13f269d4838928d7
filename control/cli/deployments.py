"""`edge-control deploy` and `edge-control deployment ...`: deployments and their rollouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from control.cli.client import quote
from control.cli.support import (
    Record,
    Row,
    ago,
    call,
    emit,
    list_command,
    output_option,
    read_document,
    table,
)

__all__ = ["deploy", "deployment"]


def _line(result: dict[str, Any], what: str) -> str:
    return (
        f"deployment {result['name']} {what}: {result['phase']} "
        f"{result['target'] or ''} {result['message']}".rstrip()
    )


@click.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(path_type=Path))
@output_option
@click.pass_context
def deploy(ctx: click.Context, /, path: Path, output: str) -> None:
    """Create or change a deployment."""
    doc = read_document(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise click.ClickException(f"{path}: the deployment needs a name")
    result = call(ctx, lambda c: c.put(f"/v1/deployments/{quote(doc['name'])}", doc))
    emit(output, result, _line(result, result["outcome"]))


@click.group()
def deployment() -> None:
    """Deployments and their rollouts."""


@list_command(
    deployment,
    "/v1/deployments",
    "deployments",
    ["NAME", "APPLICATION", "VERSION", "TARGET", "PHASE", "SITES"],
)
def deployment_ls(d: Record) -> Row:
    """List deployments."""
    placement = d["spec"]["placement"]
    where = "all-sites" if placement.get("all-sites") else placement["match-site-labels"]
    return (
        d["name"],
        d["spec"]["application"],
        d["spec"]["version"],
        d["target"] or "-",
        d["phase"],
        where,
    )


def _health(site: dict[str, Any]) -> str:
    health, since = site.get("health", "-"), site.get("since")
    if health == "failed":
        return f"failed: {site['failed']}"
    return f"{health} since {ago(since)}" if since and health in ("healthy", "offline") else health


@deployment.command("status")
@click.argument("name")
@output_option
@click.pass_context
def deployment_status(ctx: click.Context, /, name: str, output: str) -> None:
    """The rollout's phase; per site: version, health and since when; earlier rollouts."""
    result = call(ctx, lambda c: c.get(f"/v1/deployments/{quote(name)}/status"))
    head = (
        f"deployment {result['name']}: {result['spec']['application']} "
        f"{result['target'] or '-'} {result['phase']} {result['message']}".rstrip()
    )
    rows = table(
        [
            (
                s["site"],
                s["version"] or "-",
                "yes" if s["in_sync"] else "no",
                f"{s['ready']}/{s['instances']}",
                "connected" if s["connected"] else ago(s["last_contact"]),
                _health(s),
            )
            for s in result["sites"]
        ],
        ["SITE", "VERSION", "IN-SYNC", "READY", "CONTACT", "HEALTH"],
    )
    history = result.get("history") or []
    past = ""
    if history:
        past = "\n\nrollouts:\n" + table(
            [
                (h["target"], h["phase"], ago(h["started"]), ago(h["ended"]), h.get("message", ""))
                for h in reversed(history)
            ],
            ["VERSION", "OUTCOME", "STARTED", "ENDED", "MESSAGE"],
        )
    emit(output, result, f"{head}\n{rows}{past}")


def _action(verb: str, path: str, done: str, doc: str) -> None:
    @deployment.command(verb)
    @click.argument("name")
    @click.option("--reason", default="", help="Why: recorded in the rollout's message.")
    @output_option
    @click.pass_context
    def command(ctx: click.Context, /, name: str, reason: str, output: str) -> None:
        body = {"reason": reason} if reason else {}
        result = call(ctx, lambda c: c.post(f"/v1/deployments/{quote(name)}/{path}", body))
        emit(output, result, _line(result, done))

    command.__doc__ = doc


_action("pause", "pause", "paused", "Pause the rollout: no further site moves until resume.")
_action("resume", "resume", "resumed", "Resume a paused rollout.")
_action(
    "rollback",
    "rollback",
    "rolled back",
    "Every site that moved goes back to the version it ran before the rollout.",
)


@deployment.command("rm")
@click.argument("name")
@click.pass_context
def deployment_rm(ctx: click.Context, /, name: str) -> None:
    """Delete a deployment: its sites remove the application."""
    call(ctx, lambda c: c.delete(f"/v1/deployments/{quote(name)}"))
    click.echo(f"deployment {name} deleted")
