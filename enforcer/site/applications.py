"""The site's applications: site-local ones (the local API) and control's, kept in the store.

Each name has one owner. A site-local application cannot be created, changed or removed under a
name that control owns (`Conflict`), and control's desired state never replaces a site-local
application of the same name (an event says so).

A stored application that no longer validates (an older version let it through) does not stop
the enforcer: it is kept as `broken`, its instances show as failed with the reason, and it can
be removed or replaced like any other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

from enforcer.facade import AppRecord, AppSource, Conflict, Invalid, NotFound
from enforcer.shared.spec.model import Application
from enforcer.shared.spec.parse import SpecError, application_to_document, parse_application
from enforcer.site.broken import BrokenApp
from enforcer.site.store import Store

__all__ = ["Applications"]

log = logging.getLogger(__name__)


class Emit(Protocol):
    def __call__(self, kind: str, message: str, *, app: str = "") -> Awaitable[None]: ...


def _record(app: Application, source: AppSource) -> AppRecord:
    return AppRecord(
        name=app.name,
        version=app.version,
        tenant=app.tenant,
        source=source,
        document=application_to_document(app),
        updated=time.time(),
    )


class Applications:
    """The records and their parsed applications. Callers serialise changes (the daemon's
    lock)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.records: dict[str, AppRecord] = {}
        self.apps: dict[str, Application] = {}
        self.broken: dict[str, BrokenApp] = {}  # stored, but no longer valid: failed

    async def load(self) -> None:
        for rec in await self.store.applications():
            self.records[rec.name] = rec
            try:
                self.apps[rec.name] = parse_application(rec.document, tenant=rec.tenant)
            except Exception as exc:  # whatever it holds: that application fails, no more
                reason = str(exc) if isinstance(exc, SpecError) else f"{type(exc).__name__}: {exc}"
                reason = f"the stored application no longer validates: {reason}"
                log.error("application %s: %s", rec.name, reason)
                self.broken[rec.name] = BrokenApp.of(rec, reason)

    def _set(self, rec: AppRecord, app: Application) -> None:
        self.records[rec.name], self.apps[rec.name] = rec, app
        self.broken.pop(rec.name, None)

    def _forget(self, name: str) -> None:
        del self.records[name]
        self.apps.pop(name, None)
        self.broken.pop(name, None)

    def get(self, name: str) -> AppRecord:
        try:
            return self.records[name]
        except KeyError:
            raise NotFound(f"application {name} does not exist") from None

    def all(self) -> list[AppRecord]:
        return sorted(self.records.values(), key=lambda r: r.name)

    async def apply_local(self, document: Mapping[str, Any]) -> tuple[AppRecord, bool]:
        """Store a site-local application; raises Invalid or Conflict."""
        try:
            app = parse_application(document)
        except SpecError as exc:
            raise Invalid(str(exc)) from exc
        old = self.records.get(app.name)
        if old is not None and old.source is AppSource.CONTROL:
            raise Conflict(
                f"application {app.name} is managed by control; "
                "deploy it there or choose another name"
            )
        rec = _record(app, AppSource.LOCAL)
        if old is not None and old.document == rec.document and app.name not in self.broken:
            return old, False
        await self.store.put_application(rec)
        self._set(rec, app)
        return rec, True

    async def remove_local(self, name: str) -> None:
        """Forget a site-local application; raises NotFound or Conflict (control owns it)."""
        rec = self.get(name)
        if rec.source is AppSource.CONTROL:
            raise Conflict(
                f"application {name} is managed by control; only control removes it "
                "(remove its deployment there)"
            )
        await self.store.delete_application(name)
        self._forget(name)

    async def replace_from_control(self, entries: Sequence[Mapping[str, Any]], emit: Emit) -> None:
        """Control's applications ({name, tenant, spec}) replace the ones it sent before."""
        wanted: dict[str, Application] = {}
        for entry in entries:
            try:
                app = parse_application(entry["spec"], tenant=entry.get("tenant", "system"))
            except (SpecError, KeyError) as exc:
                await emit("control.invalid-app", f"{entry.get('name')}: {exc}")
                continue
            local = self.records.get(app.name)
            if local is not None and local.source is AppSource.LOCAL:
                await emit(
                    "control.name-clash",
                    f"application {app.name} from control clashes with a site-local "
                    "application of that name; the site-local one stays",
                    app=app.name,
                )
                continue
            wanted[app.name] = app
        for name, rec in list(self.records.items()):
            if rec.source is AppSource.CONTROL and name not in wanted:
                await self.store.delete_application(name)
                self._forget(name)
        for name, app in wanted.items():
            rec = _record(app, AppSource.CONTROL)
            old = self.records.get(name)
            if old is None or old.document != rec.document or old.tenant != rec.tenant:
                await self.store.put_application(rec)
                self._set(rec, app)
