"""Compose files at `edge-control`: ``app convert`` prints the spec a Compose file converts to;
``app push`` pushes it (docs/compose.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from control.cli.support import read_document
from enforcer.shared.spec.compose import ComposeError, is_compose
from enforcer.shared.spec.compose_load import convert_file

__all__ = ["app_convert", "converted", "name_option"]

name_option = click.option(
    "--name",
    default=None,
    metavar="NAME",
    help="A Compose file's application name (default: its name:, else its directory's name).",
)


def converted(path: Path, document: Any, name: str | None) -> Any:
    """`document` itself when it is a spec; the spec it converts to when it is a Compose file
    (notes and warnings go to stderr). Raises ClickException listing every problem."""
    if not is_compose(document):
        if name is not None:
            raise click.ClickException(f"{path}: --name is for Compose files (a spec has name:)")
        return document
    try:
        conversion, notes = convert_file(document, str(path), name=name)
    except ComposeError as exc:
        problems = "".join(f"\n  {line}" for line in exc.errors)
        raise click.ClickException(
            f"{path}: the Compose file cannot be converted{problems}"
        ) from None
    for line in notes:
        click.echo(f"edge-control: note: {line}", err=True)
    for line in conversion.warnings:
        click.echo(f"edge-control: warning: {line}", err=True)
    return conversion.document


@click.command("convert")
@click.option("-f", "--file", "path", required=True, type=click.Path(path_type=Path))
@name_option
def app_convert(path: Path, name: str | None) -> None:
    """Print the application spec that a Compose file converts to (warnings on stderr)."""
    document = read_document(path)
    if not is_compose(document):
        raise click.ClickException(
            f"{path}: not a Compose file (a Compose file's services is a mapping of names to "
            "services; an application spec's is a list)"
        )
    spec = converted(path, document, name)
    click.echo(yaml.safe_dump(spec, sort_keys=False).rstrip())
