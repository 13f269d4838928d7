"""Sites as operators see them: labels, tenants, revocation, events; and sites' certificates."""

from __future__ import annotations

import logging
from typing import Any

from control.fleet.access import Principal
from control.model import Forbidden, Invalid, NotFound, Site, Unauthorized, check_labels
from control.service.core import Core

log = logging.getLogger(__name__)


class Sites:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def load(self) -> None:
        sites = await self.core.store.sites.load()
        self.core.fleet.sites.update((s.name, s) for s in sites)

    def get(self, who: Principal, name: str) -> Site:
        site = self.core.fleet.sites.get(name)
        if site is None or not (who.is_admin or who.visible & set(site.tenants)):
            raise NotFound(f"site {name!r} does not exist")
        return site

    def visible(self, who: Principal) -> list[Site]:
        return [
            s
            for _, s in sorted(self.core.fleet.sites.items())
            if who.is_admin or who.visible & set(s.tenants)
        ]

    async def label(self, who: Principal, name: str, changes: dict[str, str | None]) -> Site:
        who.require_admin("label sites")
        site = self.get(who, name)
        labels = dict(site.labels)
        for key, value in changes.items():
            if key.startswith("system/"):
                raise Invalid(f"label {key!r}: system/ labels are set by Edgeward")
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
        check_labels(labels)
        return await self.core.change_site(name, labels=labels)

    async def assign(self, who: Principal, name: str, tenant: str) -> Site:
        who.require_admin("assign sites")
        site = self.get(who, name)
        if tenant not in self.core.fleet.tenants:
            raise NotFound(f"tenant {tenant!r} does not exist")
        if tenant in site.tenants:
            return site
        return await self.core.change_site(name, tenants=sorted({*site.tenants, tenant}))

    async def revoke(self, who: Principal, name: str) -> Site:
        who.require_admin("revoke sites")
        self.get(who, name)
        updated = await self.core.change_site(name, revoked=True)
        self.core.fleet.desired.wake(name)
        log.warning("site %s revoked", name)
        return updated

    def for_certificate(self, peercert: dict[str, Any] | None) -> Site:
        """The site a verified client certificate belongs to; refuses revoked or replaced ones."""
        if not peercert:
            raise Unauthorized("the sync API needs the site's client certificate (mutual TLS)")
        name = ""
        for rdn in peercert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    name = value
        site = self.core.fleet.sites.get(name)
        if site is None or site.cert_serial != peercert.get("serialNumber"):
            raise Forbidden(
                f"the certificate of site {name!r} is not valid any more "
                "(replaced by a newer enrollment, or the site was removed)"
            )
        if site.revoked:
            raise Forbidden(f"site {name!r} is revoked")
        return site

    async def events(self, who: Principal, name: str, limit: int) -> list[dict[str, Any]]:
        """The site's events; a tenant sees only those about its (and sub-tenants') apps."""
        self.get(who, name)
        events = await self.core.store.sites.events(name, limit)
        if who.is_admin:
            return events
        return [e for e in events if self.core.fleet.app_visible(who.visible, _event_app(e))]


def _event_app(record: dict[str, Any]) -> Any:
    event = record.get("event")
    if not isinstance(event, dict):
        return None
    app = event.get("app")
    if app is None and isinstance(event.get("instance"), str):
        app = event["instance"].split(".", 1)[0]
    return app
