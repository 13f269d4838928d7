"""Control's schema, as numbered migrations applied in order when a store opens (or by
`edge-control db upgrade`), the same list for SQLite and PostgreSQL.

The migrations are written in SQLite's dialect; `postgres_dialect` turns one into
PostgreSQL's (the few type names differ). Never edit a migration that has shipped; append a new
one.
"""

from __future__ import annotations

import re

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE tenants (name TEXT PRIMARY KEY, parent TEXT REFERENCES tenants(name),
                          created REAL NOT NULL);
    CREATE TABLE tokens (hash TEXT PRIMARY KEY, tenant TEXT NOT NULL REFERENCES tenants(name),
                         created REAL NOT NULL, description TEXT NOT NULL DEFAULT '');
    CREATE TABLE sites (name TEXT PRIMARY KEY, labels TEXT NOT NULL, created REAL NOT NULL,
                        tenants TEXT NOT NULL DEFAULT '[]', cert_serial TEXT NOT NULL DEFAULT '',
                        enrolled REAL, revoked INTEGER NOT NULL DEFAULT 0,
                        revision INTEGER NOT NULL DEFAULT 0, digest TEXT NOT NULL DEFAULT '',
                        last_seq INTEGER NOT NULL DEFAULT 0, last_contact REAL,
                        status TEXT, status_time REAL, ready TEXT NOT NULL DEFAULT '{}',
                        failed TEXT NOT NULL DEFAULT '{}');
    CREATE TABLE enrollments (secret_hash TEXT PRIMARY KEY,
                              site TEXT NOT NULL REFERENCES sites(name),
                              created REAL NOT NULL, expires REAL NOT NULL, used REAL);
    CREATE TABLE app_versions (name TEXT NOT NULL, version TEXT NOT NULL, tenant TEXT NOT NULL,
                               document TEXT NOT NULL, digest TEXT NOT NULL,
                               created REAL NOT NULL, PRIMARY KEY (name, version));
    CREATE TABLE deployments (name TEXT PRIMARY KEY, tenant TEXT NOT NULL,
                              document TEXT NOT NULL, created REAL NOT NULL,
                              updated REAL NOT NULL, rollout TEXT);
    CREATE TABLE site_events (id INTEGER PRIMARY KEY AUTOINCREMENT, site TEXT NOT NULL,
                              seq INTEGER NOT NULL, received REAL NOT NULL, event TEXT NOT NULL);
    CREATE INDEX site_events_by_site ON site_events (site, id);
    """,
    # 2: vaults (secrets encrypted under per-vault data keys), the master key's check value,
    # per-site vault keys for remote unseal, sites' public keys, tenant quotas
    """
    CREATE TABLE control_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE vaults (name TEXT PRIMARY KEY, tenant TEXT NOT NULL REFERENCES tenants(name),
                         distribute TEXT NOT NULL, unseal TEXT NOT NULL,
                         version INTEGER NOT NULL, wrapped_key BLOB NOT NULL, blob BLOB NOT NULL,
                         keys TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
    CREATE TABLE site_vault_keys (site TEXT PRIMARY KEY, wrapped BLOB NOT NULL,
                                  created REAL NOT NULL);
    ALTER TABLE sites ADD COLUMN public_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE tenants ADD COLUMN quota TEXT NOT NULL DEFAULT '{}';
    """,
    # 3: the change feed: one row per changed record, read by the other control processes on
    # one PostgreSQL database (rows are kept a while, then trimmed)
    """
    CREATE TABLE changes (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
                          name TEXT NOT NULL, at REAL NOT NULL);
    """,
    # 4: site events' searchable fields as columns (old rows keep them '' / 0 and are read from
    # their JSON), and log requests handed to sites through the sync long-poll and answered by
    # them (kept in the database so that any control process can hand one out or answer it)
    """
    ALTER TABLE site_events ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
    ALTER TABLE site_events ADD COLUMN app TEXT NOT NULL DEFAULT '';
    ALTER TABLE site_events ADD COLUMN instance TEXT NOT NULL DEFAULT '';
    ALTER TABLE site_events ADD COLUMN kind TEXT NOT NULL DEFAULT '';
    ALTER TABLE site_events ADD COLUMN time REAL NOT NULL DEFAULT 0;
    CREATE INDEX site_events_by_app ON site_events (app, id);
    CREATE INDEX site_events_by_tenant ON site_events (tenant, id);
    CREATE INDEX site_events_by_received ON site_events (received);
    CREATE TABLE log_requests (id TEXT PRIMARY KEY, site TEXT NOT NULL, request TEXT NOT NULL,
                               created REAL NOT NULL, handed REAL, reply TEXT, replied REAL);
    CREATE INDEX log_requests_by_site ON log_requests (site, created);
    """,
    # 5: Git sources (credentials wrapped by the master key, the hook's secret hashed) with the
    # state of their last fetch, and what each source owns (kind: application, deployment or
    # vault): hand edits of those are refused
    """
    CREATE TABLE git_sources (name TEXT PRIMARY KEY, tenant TEXT NOT NULL REFERENCES tenants(name),
                              url TEXT NOT NULL, branch TEXT NOT NULL, path TEXT NOT NULL,
                              poll_seconds REAL NOT NULL, prune INTEGER NOT NULL,
                              auth TEXT NOT NULL, credentials BLOB NOT NULL,
                              hook_hash TEXT NOT NULL, created REAL NOT NULL,
                              applied_commit TEXT NOT NULL DEFAULT '', applied_at REAL,
                              seen_commit TEXT NOT NULL DEFAULT '', seen_at REAL,
                              problem TEXT NOT NULL DEFAULT '', errors TEXT NOT NULL DEFAULT '[]');
    CREATE TABLE git_owned (kind TEXT NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL,
                            PRIMARY KEY (kind, name));
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

_POSTGRES_TYPES = [
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
]


def postgres_dialect(script: str) -> str:
    """A migration in PostgreSQL's dialect."""
    for pattern, replacement in _POSTGRES_TYPES:
        script = pattern.sub(replacement, script)
    return script


def statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


class SchemaTooNew(Exception):
    """The database was migrated by a newer control than this one."""


def check_version(current: int, where: str) -> None:
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{where}: the database schema is version {current}, newer than this control's "
            f"(version {SCHEMA_VERSION}); run the newer edgeward, or restore a backup"
        )
