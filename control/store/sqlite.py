"""Control's store in one SQLite file (WAL, aiosqlite), composed from one part per record kind.

Every method is one transaction, so nothing is stored half-way (see `control.store.base`).
"""

from __future__ import annotations

from pathlib import Path

from control.store.base import Store
from control.store.sqlite_apps import SQLiteApps, SQLiteDeployments
from control.store.sqlite_db import Database
from control.store.sqlite_events import SQLiteEvents, SQLiteLogRequests
from control.store.sqlite_git import SQLiteGit
from control.store.sqlite_sites import SQLiteSites
from control.store.sqlite_tenants import SQLiteTenants
from control.store.sqlite_vaults import SQLiteVaults


class SQLiteStore(Store):
    """The store in one SQLite file: its parts share one `Database`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = Database(path)
        self.tenants = SQLiteTenants(self.db)
        self.sites = SQLiteSites(self.db)
        self.apps = SQLiteApps(self.db)
        self.deployments = SQLiteDeployments(self.db)
        self.vaults = SQLiteVaults(self.db)
        self.git = SQLiteGit(self.db)
        self.events = SQLiteEvents(self.db)
        self.log_requests = SQLiteLogRequests(self.db)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def schema_version(self) -> int:
        rows = await self.db.rows("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(rows[0][0])
