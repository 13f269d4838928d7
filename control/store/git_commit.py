"""The statements that apply one commit of a Git source, shared by the SQLite and PostgreSQL
stores (each runs them in one transaction of its own)."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from control.store.git import CommitWrite
from control.store.rows import dumps

VAULT_COLUMNS = (
    "name, tenant, distribute, unseal, version, wrapped_key, blob, keys, created, updated"
)

Statement = tuple[str, list[tuple[Any, ...]]]


def commit_statements(w: CommitWrite) -> list[Statement]:
    """What applying `w` executes, in order: each statement (in SQLite's `?` placeholders; see
    `numbered`) with its rows. The stores run them in one transaction."""
    return [
        ("DELETE FROM deployments WHERE name = ?", [(n,) for n in w.deployments_removed]),
        ("DELETE FROM app_versions WHERE name = ?", [(n,) for n in w.apps_removed]),
        ("DELETE FROM app_versions WHERE name = ? AND version = ?", list(w.versions_removed)),
        ("DELETE FROM vaults WHERE name = ?", [(n,) for n in w.vaults_removed]),
        (
            f"INSERT INTO vaults ({VAULT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    v.name,
                    v.tenant,
                    v.distribute,
                    v.unseal,
                    v.version,
                    v.wrapped_key,
                    v.blob,
                    json.dumps(v.keys, sort_keys=True),
                    v.created,
                    v.updated,
                )
                for v in w.vaults_created
            ],
        ),
        (
            "UPDATE vaults SET distribute = ?, unseal = ?, updated = ? WHERE name = ?",
            [(d, u, w.at, n) for n, d, u in w.vaults_changed],
        ),
        (
            "INSERT INTO app_versions (name, version, tenant, document, digest, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(a.name, a.version, a.tenant, dumps(a.document), a.digest, a.created) for a in w.apps],
        ),
        (
            "INSERT INTO deployments (name, tenant, document, created, updated) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "document = excluded.document, updated = excluded.updated",
            [(d.name, d.tenant, dumps(d.document), d.created, d.updated) for d in w.deployments],
        ),
        ("DELETE FROM git_owned WHERE source = ?", [(w.source,)]),
        (
            "INSERT INTO git_owned (kind, name, source) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, name) DO UPDATE SET source = excluded.source",
            [(kind, name, w.source) for kind, name in w.owned],
        ),
        (
            "UPDATE git_sources SET applied_commit = ?, applied_at = ?, seen_commit = ?, "
            "seen_at = ?, problem = '', errors = '[]' WHERE name = ?",
            [(w.commit, w.at, w.commit, w.at, w.source)],
        ),
    ]


def numbered(sql: str) -> str:
    """`sql` with PostgreSQL's ``$1, $2, ...`` in place of SQLite's ``?`` placeholders."""
    count = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)
