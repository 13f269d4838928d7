"""Control's SQLite schema, as numbered migrations (applied in order by `SQLiteStore.open`).

Never edit a migration that has shipped; append a new one.
"""

from __future__ import annotations

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
]
