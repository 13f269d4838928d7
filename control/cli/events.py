"""`edge-control events` and `edge-control logs`: the fleet's events, and a site's logs fetched
through its sync channel."""

from __future__ import annotations

import datetime
import functools
import json
import sys
from typing import Any

import click

from control.cli.client import ControlClient, quote
from control.cli.support import call, output_option

__all__ = ["events", "logs"]

FOLLOW_WAIT = 25  # seconds each call of -f waits for news (under the client's 30 s timeout)


def event_line(event: dict[str, Any]) -> str:
    when = event.get("time")
    stamp = (
        datetime.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(when, int | float)
        else "-"
    )
    subject = event.get("instance") or event.get("app") or "-"
    message = str(event.get("message", "")).replace("\n", "\\n")
    return f"{stamp}  {event.get('site', '-')}  {event.get('kind', '')}  {subject}  {message}"


def _show(output: str, found: list[dict[str, Any]]) -> None:
    for event in found:
        click.echo(json.dumps(event, sort_keys=True) if output == "json" else event_line(event))
    sys.stdout.flush()


@click.command()
@click.option("--site", help="Only this site's events.")
@click.option("--app", help="Only events about this application's instances.")
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="How many of the newest events to show first.")  # fmt: skip
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as they arrive.")
@output_option
@click.pass_context
def events(
    ctx: click.Context, /, site: str | None, app: str | None, limit: int, follow: bool, output: str
) -> None:
    """The fleet's events, oldest first (one JSON object per line with -o json)."""
    query = {k: v for k, v in (("site", site), ("app", app)) if v}

    def page(client: ControlClient, **more: str) -> dict[str, Any]:
        answer: dict[str, Any] = client.get("/v1/events", **query, **more)
        return answer

    first = call(ctx, lambda c: page(c, limit=str(limit)))
    _show(output, first["events"])
    if not follow:
        return
    last = first["last"]
    try:
        while True:
            found = call(ctx, functools.partial(page, after=str(last), wait=str(FOLLOW_WAIT)))
            _show(output, found["events"])
            last = found["last"]
    except KeyboardInterrupt:
        return


@click.command()
@click.argument("site")
@click.argument("instance")
@click.option("-c", "--container", help="The container [default: the instance's first].")
@click.option("--tail", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="How many of the latest lines.")  # fmt: skip
@output_option
@click.pass_context
def logs(
    ctx: click.Context, /, site: str, instance: str, container: str | None, tail: int, output: str
) -> None:
    """An instance's latest output, fetched from its site (stderr lines to stderr)."""
    query = {"instance": instance, "tail": str(tail)}
    if container:
        query["container"] = container
    answer = call(ctx, lambda c: c.get(f"/v1/sites/{quote(site)}/logs", **query))
    if output == "json":
        click.echo(json.dumps(answer, indent=2, sort_keys=True))
        return
    for line in answer["lines"]:
        click.echo(line.get("line", ""), err=line.get("stream") == "stderr")
