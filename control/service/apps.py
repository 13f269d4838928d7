"""Application versions: pushed by tenants, immutable, the last few kept per application."""

from __future__ import annotations

import hashlib
from typing import Any

from control.fleet import deployments as dep
from control.fleet.access import Principal
from control.model import AppVersion, Forbidden, Invalid, NotFound, canonical_json
from control.service.core import Core
from control.service.vaults import Vaults
from enforcer.shared.spec.parse import SpecError, application_to_document, parse_application

VERSIONS_KEPT = 10


class Applications:
    def __init__(self, core: Core, vaults: Vaults) -> None:
        self.core = core
        self.vaults = vaults

    async def load(self) -> None:
        versions = await self.core.store.apps.versions()
        self.core.fleet.apps = {(a.name, a.version): a for a in versions}

    async def push(
        self, who: Principal, name: str, version: str, document: Any
    ) -> tuple[bool, AppVersion]:
        """Store a version; (created, it). The same spec again is not an error."""
        core, fleet = self.core, self.core.fleet
        if fleet.app_visible(who.visible, name):
            core.refuse_owned("application", name)
        tenant = who.tenant
        try:
            app = parse_application(document, tenant=tenant)
        except SpecError as e:
            raise Invalid(
                f"the application spec is not valid: {e}", [(f.path, f.message) for f in e.errors]
            ) from e
        if (app.name, app.version) != (name, version):
            raise Invalid(
                f"the spec is {app.name} version {app.version}, "
                f"but the URL names {name} version {version}"
            )
        canonical = application_to_document(app)
        self.vaults.check_secret_references(who, canonical)
        digest = hashlib.sha256(canonical_json(canonical)).hexdigest()
        record = AppVersion(name, version, tenant, canonical, digest, core.clock())
        owner = fleet.app_owner(name)
        if owner is not None and owner not in who.visible:
            raise Forbidden(f"application {name} belongs to another tenant")
        protected = fleet.protected_versions(name)
        async with core.lock:
            created = await core.store.apps.put_version(record, VERSIONS_KEPT, protected)
            if not created:
                return False, fleet.apps.get((name, version), record)
            await self.load()
            await core.retarget(
                [
                    d
                    for d in fleet.deployments.values()
                    if d.spec.application == name and d.spec.version == dep.LATEST
                ]
            )
        return True, record

    def visible(self, who: Principal) -> list[AppVersion]:
        return sorted(
            (a for a in self.core.fleet.apps.values() if a.tenant in who.visible),
            key=lambda a: (a.name, a.created),
        )

    def version(self, who: Principal, name: str, version: str) -> AppVersion:
        if version == dep.LATEST:
            version = self.core.fleet.latest_version(name) or version
        app = self.core.fleet.apps.get((name, version))
        if app is None or app.tenant not in who.visible:
            raise NotFound(f"application {name} version {version} does not exist")
        return app
