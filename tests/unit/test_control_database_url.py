"""The `database` key of control.toml, the descriptions of a database in messages, and the one
list of migrations in both dialects."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from control.config import ConfigError, check_database_url, describe_database, parse_config
from control.store.schema import MIGRATIONS, SchemaTooNew, check_version, postgres_dialect
from control.store.sqlite import SQLiteStore


def test_a_postgresql_url_is_described_by_host_port_and_database_never_the_password() -> None:
    url = "postgresql://edgeward:Secret-99@db1.example.org:5433/fleet"
    assert check_database_url(url) is None
    assert describe_database(url) == 'PostgreSQL database "fleet" on db1.example.org:5433'
    socket = "postgresql://edgeward:Secret-99@/fleet?host=/run/postgresql"
    assert describe_database(socket) == 'PostgreSQL database "fleet" on /run/postgresql (port 5432)'


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://u:Secret-99@h/db", "a postgresql:// URL"),
        ("postgresql://u:Secret-99@h:port/db", "port in the URL is not a number"),
        ("postgresql://u:Secret-99@h:99999/db", "port in the URL is not a number"),
        ("postgresql://u:Secret-99@h", "names no database"),
        ("postgresql:///db", "names no host"),
    ],
)
def test_a_malformed_database_url_is_refused_naming_file_line_and_problem_not_password(
    url: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f'listen = "127.0.0.1:7443"\ndatabase = "{url}"\n', "/etc/c.toml")
    assert str(info.value).startswith("/etc/c.toml:2: database: ")
    assert problem in str(info.value)
    assert "Secret-99" not in str(info.value)


def test_every_migration_has_a_postgresql_form_with_postgresql_types() -> None:
    for script in MIGRATIONS:
        converted = postgres_dialect(script)
        assert " BLOB" not in converted and " REAL" not in converted
        assert "AUTOINCREMENT" not in converted
    assert "id BIGSERIAL PRIMARY KEY" in postgres_dialect(MIGRATIONS[0])


def test_a_schema_newer_than_the_code_is_refused_naming_both_versions(tmp_path: Path) -> None:
    newer = len(MIGRATIONS) + 4
    check_version(len(MIGRATIONS), "db")
    with pytest.raises(SchemaTooNew, match=f"version {newer}, newer than this control's"):
        check_version(newer, "db")

    async def open_store() -> None:
        store = SQLiteStore(tmp_path / "control.db")
        await store.open()
        await store.close()

    asyncio.run(open_store())
    db = sqlite3.connect(tmp_path / "control.db")
    db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (newer,))
    db.commit()
    db.close()
    with pytest.raises(SchemaTooNew) as info:
        asyncio.run(open_store())
    assert f"(version {len(MIGRATIONS)})" in str(info.value) and str(tmp_path) in str(info.value)
