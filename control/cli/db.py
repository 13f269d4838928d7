"""`edge-control db`: the control database's schema and moving it (DESIGN.md, "Control and sync").

``db upgrade`` applies the migrations the configured database lacks (control also does so when it
starts); ``db copy --to postgresql://...`` copies a SQLite control's data into an empty
PostgreSQL database. Messages name the database, never its password.
"""

from __future__ import annotations

import asyncio

import click

from control.config import ControlConfig, check_database_url, describe_database
from control.server import DATABASE_FILE, StartupError, open_store
from control.store.base import StoreOpenError, StoreUnavailable
from control.store.schema import SchemaTooNew
from enforcer.shared.cli_options import not_taking


@click.group()
def db() -> None:
    """The control database: schema upgrades, moving from SQLite to PostgreSQL."""


def _where(config: ControlConfig) -> str:
    if config.database:
        return describe_database(config.database)
    return f"SQLite database {config.state_dir / DATABASE_FILE}"


@db.command()
@click.pass_context
@not_taking("url", "token", "ca")
def upgrade(ctx: click.Context, /) -> None:
    """Apply the schema migrations the configured database lacks."""
    config: ControlConfig = ctx.obj.config
    if not config.database:
        config.state_dir.mkdir(parents=True, exist_ok=True)

    async def main() -> int:
        store = await open_store(config)
        try:
            return await store.schema_version()
        finally:
            await store.close()

    try:
        version = asyncio.run(main())
    except (StartupError, StoreUnavailable) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"{_where(config)}: schema version {version} (the newest this control knows)")


@db.command()
@click.option("--to", "target", required=True, help="the PostgreSQL database: postgresql://...")
@click.pass_context
@not_taking("url", "token", "ca")
def copy(ctx: click.Context, /, target: str) -> None:
    """Copy this control's SQLite data into an empty PostgreSQL database (stop control first).

    Sites keep their certificates and vaults stay sealed under the same master key: point
    control's `database` at the copy and start it with the same state directory."""
    from control.store.copy import CopyError, copy_to_postgres

    config: ControlConfig = ctx.obj.config
    problem = check_database_url(target)
    if problem is not None:
        raise click.ClickException(f"--to: {problem}")
    source = config.state_dir / DATABASE_FILE
    try:
        counts = asyncio.run(copy_to_postgres(source, target))
    except (CopyError, StoreOpenError, StoreUnavailable, SchemaTooNew) as e:
        raise click.ClickException(str(e)) from e
    summary = ", ".join(f"{n} {table}" for table, n in counts.items() if n)
    click.echo(f"copied {source} to {describe_database(target)}: {summary or 'nothing'}")
