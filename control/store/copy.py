"""Moving a SQLite control's data into an empty PostgreSQL database (`edge-control db copy`).

Everything is copied as stored: the CA stays in the state directory, site certificates stay
valid, vaults stay sealed under the same master key (its check value is copied too), and the
sequence numbers of status batches carry over, so sites keep syncing without re-enrolling.
One transaction: the copy is complete or there is none.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from control.model import SYSTEM_TENANT
from control.store.pg_db import UNREACHABLE, PgDatabase, unavailable
from control.store.schema import SCHEMA_VERSION

# in an order that satisfies the foreign keys (tenants are sorted parents first)
TABLES = [
    "tenants",
    "tokens",
    "sites",
    "enrollments",
    "app_versions",
    "deployments",
    "site_events",
    "control_meta",
    "vaults",
    "site_vault_keys",
    "git_sources",
    "git_owned",
]
_SERIAL = {"site_events": "id"}


class CopyError(Exception):
    """The copy cannot be made; nothing was written."""


def _read(path: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    if not path.exists():
        raise CopyError(f"{path}: no SQLite database there (is --state-dir right?)")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        if int(version[0]) != SCHEMA_VERSION:
            raise CopyError(
                f"{path}: the schema is version {version[0]}, this control's is "
                f"{SCHEMA_VERSION}; run `edge-control db upgrade` on it first"
            )
        tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        for table in TABLES:
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            rows = db.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
            tables[table] = (columns, rows)
    except sqlite3.Error as e:
        raise CopyError(f"{path}: {e}") from e
    finally:
        db.close()
    columns, rows = tables["tenants"]
    tables["tenants"] = (columns, _parents_first(columns, rows))
    return tables


def _parents_first(columns: list[str], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    name, parent = columns.index("name"), columns.index("parent")
    placed = {SYSTEM_TENANT}
    ordered: list[tuple[Any, ...]] = []
    rest = [r for r in rows if r[name] != SYSTEM_TENANT]
    while rest:
        ready = [r for r in rest if r[parent] is None or r[parent] in placed]
        if not ready:
            raise CopyError("the tenants' parents form a cycle")
        ordered += ready
        placed.update(r[name] for r in ready)
        rest = [r for r in rest if r[name] not in placed]
    return ordered


def _coerce(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "double precision":
        return float(value)
    if kind == "bigint":
        return int(value)
    if kind == "bytea":
        return bytes(value)
    return str(value)


async def copy_to_postgres(sqlite_path: Path, url: str) -> dict[str, int]:
    """Copy the SQLite database at `sqlite_path` into the (migrated, empty) database at `url`;
    the number of rows copied per table."""
    tables = _read(sqlite_path)
    target = PgDatabase(url)
    await target.open()
    counts: dict[str, int] = {}
    try:
        async with target.tx() as conn:
            for table in TABLES:
                found = await conn.fetchval(
                    f"SELECT count(*) FROM {table}"
                    + (" WHERE name <> $1" if table == "tenants" else ""),
                    *((SYSTEM_TENANT,) if table == "tenants" else ()),
                )
                if found:
                    raise CopyError(
                        f"{target.where} is not empty ({table} has {found} rows); "
                        "copy into a new database"
                    )
            for table in TABLES:
                columns, rows = tables[table]
                kinds = dict(
                    await conn.fetch(
                        "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_name = $1",
                        table,
                    )
                )
                values = [
                    tuple(_coerce(kinds[c], v) for c, v in zip(columns, row, strict=True))
                    for row in rows
                ]
                marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
                await conn.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values
                )
                if table in _SERIAL:
                    column = _SERIAL[table]
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                        f"GREATEST((SELECT MAX({column}) FROM {table}), 1))"
                    )
                counts[table] = len(values)
    except UNREACHABLE as e:
        raise unavailable(target.where, e) from e
    finally:
        await target.close()
    return counts
