"""`edge-enforcer site hosts | join-bundle | join | leave`: the hosts of a multi-host site,
joining one and leaving it (DESIGN.md, "Site, hosts and the scheduler"). Registered on the
`main` group."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from enforcer.cli.render import describe

__all__ = ["site"]


def _fail(message: str) -> click.ClickException:
    from enforcer.cli.main import CliError  # the group's error line

    return CliError(message)


def _read_bundle(value: str) -> str:
    if not value.startswith("@"):
        return value.strip()
    path = value[1:]
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise _fail(f"{path}: {(exc.strerror or str(exc)).lower()}") from None
    return text.strip()


def _hosts_document(site_doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "hosts": site_doc.get("hosts") or [],
        "leader": site_doc.get("leader"),
        "store": site_doc.get("store"),
        "control": site_doc.get("control"),
    }


def hosts_table(doc: dict[str, Any]) -> str:
    """The hosts as a table, then the leader, the store and the control link."""
    rows = [("ID", "ADDRESS", "ROLE", "STATE", "LEASE-AGE")]
    for h in doc["hosts"]:
        age = h.get("lease-age")
        rows.append(
            (
                str(h.get("id", "")),
                str(h.get("address") or "-"),
                str(h.get("role") or "-"),
                str(h.get("state", "")),
                "-" if age is None else f"{float(age):.1f}s",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += [
        "",
        f"leader:   {doc.get('leader') or 'none'}",
        f"store:    {describe(doc.get('store'))}",
        f"control:  {describe(doc.get('control'))}",
    ]
    return "\n".join(lines)


@click.group()
def site() -> None:
    """The hosts of this site; joining a multi-host site."""


@site.command()
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.pass_obj
def hosts(opts: Any, output: str) -> None:
    """List the site's hosts: address, role, state, lease age; the leader and the store."""
    doc = _hosts_document(opts.client().site())
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(hosts_table(doc))


@site.command("join-bundle")
@click.option(
    "--role",
    type=click.Choice(["controller", "worker"]),
    default="controller",
    show_default=True,
    help="What the new host becomes: a controller (runs a store member) or a worker.",
)
@click.option("--expires", default="1h", show_default=True, help="How long the bundle may be used.")
@click.pass_obj
def join_bundle(opts: Any, role: str, expires: str) -> None:
    """Print a one-time join bundle for a new host (on a controller of the site)."""
    answer = opts.client().join_bundle(role, expires)
    for warning in answer.get("warnings") or []:
        click.echo(f"warning: {warning}", err=True)
    click.echo(str(answer["bundle"]))


@site.command()
@click.argument("bundle")
@click.option(
    "--advertise",
    default="",
    metavar="ADDRESS",
    help="This host's address inside the site [default: cluster.advertise].",
)
@click.pass_obj
def join(opts: Any, bundle: str, advertise: str) -> None:
    """Make the running enforcer join the site of BUNDLE (@FILE reads it from a file)."""
    text = _read_bundle(bundle)
    if not text:
        raise _fail("the join bundle is empty")
    answer = opts.client().join(text, advertise)
    for warning in answer.get("warnings") or []:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"joined site {answer.get('site')} as a {answer.get('role')}")


@site.command()
@click.pass_obj
def leave(opts: Any) -> None:
    """Make this host leave its multi-host site: its instances move to other hosts first."""
    answer = opts.client().leave()
    for warning in answer.get("warnings") or []:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"host {answer.get('host')} left site {answer.get('site')}")
