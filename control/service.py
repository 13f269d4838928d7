"""Control's operations over its store, with the fleet's desired state kept in memory.

Every change (a push, a deployment, a relabel, a rollout step) recomputes the desired state of
the sites it may touch; a site whose set of (application, version) changed gets a new revision
and its waiting long-poll is woken through an `asyncio.Event`, so an idle site costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from control import deployments as dep
from control.auth import Principal, new_token, token_hash
from control.desired import DesiredStates
from control.model import (
    SYSTEM_TENANT,
    AppVersion,
    Conflict,
    Deployment,
    Forbidden,
    Invalid,
    NotFound,
    Site,
    StatusResult,
    Tenant,
    Unauthorized,
    canonical_json,
    check_labels,
    check_name,
    copy_site,
)
from control.pki import Authority
from control.store import Store
from enforcer.enrollment import Bundle, encode_bundle
from enforcer.spec.parse import SpecError, application_to_document, parse_application

log = logging.getLogger(__name__)

VERSIONS_KEPT = 10
CONTACT_FLUSH_SECONDS = 10.0
ROLLOUT_TICK_SECONDS = 1.0
MAX_EVENTS_PER_BATCH = 1000


@dataclass
class _DeploymentState:
    record: Deployment
    spec: dep.DeploymentSpec
    rollout: dep.Rollout | None = None


@dataclass
class Metrics:
    counters: dict[str, int] = field(default_factory=dict)

    def inc(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by


class ControlService:
    def __init__(self, store: Store, authority: Authority, url: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.authority = authority
        self.url = url
        self.clock = clock
        self.metrics = Metrics()
        self.sites: dict[str, Site] = {}
        self.tenants: dict[str, Tenant] = {}
        self.apps: dict[tuple[str, str], AppVersion] = {}
        self.deployments: dict[str, _DeploymentState] = {}
        self.desired = DesiredStates()
        self._contacts: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._rollout_wakeup = asyncio.Event()
        self._lock = asyncio.Lock()  # serialises changes to the desired state

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.tenants = {t.name: t for t in await self.store.list_tenants()}
        self.sites = {s.name: s for s in await self.store.load_sites()}
        self.apps = {(a.name, a.version): a for a in await self.store.app_versions()}
        for record in await self.store.list_deployments():
            spec = dep.parse_deployment(record.document)
            rollout = dep.Rollout.from_json(record.rollout) if record.rollout else None
            self.deployments[record.name] = _DeploymentState(record, spec, rollout)
        async with self._lock:
            await self._recompute()
        self._tasks = [
            asyncio.create_task(self._flush_contacts_forever(), name="control-contacts"),
            asyncio.create_task(self._rollouts_forever(), name="control-rollouts"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._flush_contacts()
        self.desired.wake_all()

    # --- operators ------------------------------------------------------------------------

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("a bearer token is required (--token or EDGEWARD_TOKEN)")
        tenant = await self.store.token_tenant(token_hash(token))
        if tenant is None:
            raise Unauthorized("the token is not valid")
        return Principal(tenant, frozenset(self._subtree(tenant)))

    def _subtree(self, root: str) -> set[str]:
        found = {root}
        changed = True
        while changed:
            changed = False
            for t in self.tenants.values():
                if t.parent in found and t.name not in found:
                    found.add(t.name)
                    changed = True
        return found

    def _ancestors(self, tenant: str) -> list[str]:
        chain = []
        current: str | None = tenant
        while current is not None and current in self.tenants:
            chain.append(current)
            current = self.tenants[current].parent
        return chain

    async def create_tenant(self, who: Principal, name: str, parent: str | None) -> Tenant:
        check_name(name, "tenant")
        parent = parent or who.tenant
        who.require_visible(parent, f"tenant {parent!r}")
        tenant = await self.store.create_tenant(name, parent, self.clock())
        self.tenants[name] = tenant
        return tenant

    def list_tenants(self, who: Principal) -> list[Tenant]:
        return [t for name, t in sorted(self.tenants.items()) if name in who.visible]

    async def create_token(self, who: Principal, tenant: str, description: str = "") -> str:
        who.require_visible(tenant, f"tenant {tenant!r}")
        token = new_token()
        await self.store.add_token(token_hash(token), tenant, description, self.clock())
        return token

    async def add_admin_token(self, token: str) -> None:
        await self.store.add_token(token_hash(token), SYSTEM_TENANT, "admin-token", self.clock())

    # --- sites ----------------------------------------------------------------------------

    def site(self, who: Principal, name: str) -> Site:
        site = self.sites.get(name)
        if site is None or not (who.is_admin or who.visible & set(site.tenants)):
            raise NotFound(f"site {name!r} does not exist")
        return site

    def list_sites(self, who: Principal) -> list[Site]:
        return [s for _, s in sorted(self.sites.items())
                if who.is_admin or who.visible & set(s.tenants)]

    async def site_token(self, who: Principal, name: str, labels: dict[str, str] | None,
                         ttl: float) -> tuple[str, float]:
        who.require_admin("issue enrollment bundles")
        check_name(name, "site")
        check_labels(labels or {})
        if ttl <= 0:
            raise Invalid("the bundle's time to live must be positive")
        secret = secrets.token_urlsafe(24)
        async with self._lock:
            now = self.clock()
            existing = self.sites.get(name)
            if existing is None:
                site = Site(name=name, labels=dict(labels or {}), created=now)
            else:
                site = copy_site(existing, labels=dict(labels if labels is not None
                                                        else existing.labels))
            expires = now + ttl
            await self.store.create_enrollment(token_hash(secret), site, expires, now)
            self.sites[name] = site
            await self._recompute([name])
        bundle = Bundle(self.url, self.authority.fingerprint, secret, name)
        return encode_bundle(bundle), expires

    async def enroll(self, site: str, secret: str, csr_pem: str) -> bytes:
        if site not in self.sites:
            raise Forbidden("the enrollment bundle is not valid: control does not know its "
                            "secret (issue a new one with `edge-control site token`)")
        cert_pem, serial = self.authority.sign_site(csr_pem.encode(), site)
        async with self._lock:
            now = self.clock()
            await self.store.consume_enrollment(token_hash(secret), site, serial, now)
            record = self.sites[site]
            record.cert_serial, record.enrolled, record.revoked = serial, now, False
            record.last_seq = 0
            await self._recompute([site])
        self.metrics.inc("enrollments_total")
        log.info("site %s enrolled (certificate serial %s)", site, serial)
        return cert_pem

    async def _change_site(self, name: str, **changes: Any) -> Site:
        """Store a changed copy of a site, then recompute its desired state (under the lock)."""
        async with self._lock:
            updated = copy_site(self.sites[name], **changes)
            await self.store.save_site(updated)
            self.sites[name] = updated
            await self._recompute([name])
        self._rollout_wakeup.set()
        return updated

    async def label_site(self, who: Principal, name: str,
                         changes: dict[str, str | None]) -> Site:
        who.require_admin("label sites")
        site = self.site(who, name)
        labels = dict(site.labels)
        for key, value in changes.items():
            if key.startswith("system/"):
                raise Invalid(f"label {key!r}: system/ labels are set by Edgeward")
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
        check_labels(labels)
        return await self._change_site(name, labels=labels)

    async def assign_site(self, who: Principal, name: str, tenant: str) -> Site:
        who.require_admin("assign sites")
        site = self.site(who, name)
        if tenant not in self.tenants:
            raise NotFound(f"tenant {tenant!r} does not exist")
        if tenant in site.tenants:
            return site
        return await self._change_site(name, tenants=sorted({*site.tenants, tenant}))

    async def revoke_site(self, who: Principal, name: str) -> Site:
        who.require_admin("revoke sites")
        self.site(who, name)
        updated = await self._change_site(name, revoked=True)
        self.desired.wake(name)
        log.warning("site %s revoked", name)
        return updated

    def site_for_certificate(self, peercert: dict[str, Any] | None) -> Site:
        """The site a verified client certificate belongs to; refuses revoked or replaced ones."""
        if not peercert:
            raise Unauthorized("the sync API needs the site's client certificate (mutual TLS)")
        name = ""
        for rdn in peercert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    name = value
        site = self.sites.get(name)
        if site is None or site.cert_serial != peercert.get("serialNumber"):
            raise Forbidden(f"the certificate of site {name!r} is not valid any more "
                            "(replaced by a newer enrollment, or the site was removed)")
        if site.revoked:
            raise Forbidden(f"site {name!r} is revoked")
        return site

    # --- applications ---------------------------------------------------------------------

    async def push_app(self, who: Principal, name: str, version: str,
                       document: Any) -> tuple[bool, AppVersion]:
        tenant = who.tenant
        try:
            app = parse_application(document, tenant=tenant)
        except SpecError as e:
            raise Invalid(f"the application spec is not valid: {e}",
                          [(f.path, f.message) for f in e.errors]) from e
        if (app.name, app.version) != (name, version):
            raise Invalid(f"the spec is {app.name} version {app.version}, "
                          f"but the URL names {name} version {version}")
        canonical = application_to_document(app)
        digest = hashlib.sha256(canonical_json(canonical)).hexdigest()
        record = AppVersion(name, version, tenant, canonical, digest, self.clock())
        owner = next((a.tenant for (n, _), a in self.apps.items() if n == name), None)
        if owner is not None and owner not in who.visible:
            raise Conflict(f"application {name} belongs to another tenant")
        protected = self._protected_versions(name)
        async with self._lock:
            created = await self.store.put_app_version(record, VERSIONS_KEPT, protected)
            if not created:
                return False, self.apps.get((name, version), record)
            self.apps = {(a.name, a.version): a for a in await self.store.app_versions()}
            await self._retarget([d for d in self.deployments.values()
                                  if d.spec.application == name and d.spec.version == dep.LATEST])
        return True, record

    def _protected_versions(self, app: str) -> set[str]:
        kept: set[str] = set()
        for d in self.deployments.values():
            if d.spec.application != app:
                continue
            kept.add(d.spec.version)
            if d.rollout is not None:
                kept.add(d.rollout.target)
                kept.update(d.rollout.baseline.values())
        return kept

    def latest_version(self, app: str) -> str | None:
        versions = sorted((a for (n, _), a in self.apps.items() if n == app),
                          key=lambda a: a.created)
        return versions[-1].version if versions else None

    def list_apps(self, who: Principal) -> list[AppVersion]:
        return sorted((a for a in self.apps.values() if a.tenant in who.visible),
                      key=lambda a: (a.name, a.created))

    def app_version(self, who: Principal, name: str, version: str) -> AppVersion:
        if version == dep.LATEST:
            version = self.latest_version(name) or version
        app = self.apps.get((name, version))
        if app is None or app.tenant not in who.visible:
            raise NotFound(f"application {name} version {version} does not exist")
        return app

    # --- deployments ----------------------------------------------------------------------

    async def put_deployment(self, who: Principal, document: Any) -> tuple[str, Deployment]:
        """Create or change a deployment; returns ("created" | "updated" | "unchanged", it)."""
        try:
            spec = dep.parse_deployment(document)
        except dep.DeploymentError as e:
            raise Invalid(f"the deployment spec is not valid: {e}", e.errors) from e
        owners = {a.tenant for (n, _), a in self.apps.items() if n == spec.application}
        if not owners or not owners & who.visible:
            raise Invalid(f"application: {spec.application!r} does not exist (push it first)",
                          [("application", f"unknown application {spec.application!r}")])
        if spec.version != dep.LATEST and (spec.application, spec.version) not in self.apps:
            raise Invalid(f"version: application {spec.application} has no version "
                          f"{spec.version!r}",
                          [("version", f"unknown version {spec.version!r}")])
        canonical = dep.deployment_to_document(spec)
        now = self.clock()
        async with self._lock:
            existing = self.deployments.get(spec.name)
            if existing is not None:
                if existing.record.tenant not in who.visible:
                    raise Conflict(f"deployment {spec.name} belongs to another tenant")
                finished_badly = existing.rollout is not None and existing.rollout.phase in (
                    dep.Phase.PAUSED, dep.Phase.ROLLED_BACK)
                if existing.record.document == canonical and not finished_badly:
                    return "unchanged", existing.record
                record = Deployment(spec.name, existing.record.tenant, canonical,
                                    existing.record.created, now, existing.record.rollout)
                outcome = "updated"
            else:
                record = Deployment(spec.name, who.tenant, canonical, now, now)
                outcome = "created"
            state = _DeploymentState(record, spec, existing.rollout if existing else None)
            await self.store.put_deployment(record)
            self.deployments[spec.name] = state
            await self._retarget([state], force=True)
        return outcome, record

    async def delete_deployment(self, who: Principal, name: str) -> None:
        state = self.deployments.get(name)
        if state is None or state.record.tenant not in who.visible:
            raise NotFound(f"deployment {name} does not exist")
        async with self._lock:
            await self.store.delete_deployment(name)
            del self.deployments[name]
            await self._recompute()

    def deployment(self, who: Principal, name: str) -> _DeploymentState:
        state = self.deployments.get(name)
        if state is None or state.record.tenant not in who.visible:
            raise NotFound(f"deployment {name} does not exist")
        return state

    def list_deployments(self, who: Principal) -> list[_DeploymentState]:
        return [d for _, d in sorted(self.deployments.items()) if d.record.tenant in who.visible]

    def deployment_sites(self, state: _DeploymentState) -> list[Site]:
        """The sites the deployment may place on that match it."""
        return [s for s in self.sites.values()
                if self._eligible(s, state.record.tenant) and state.spec.matches(s.all_labels)]

    def _eligible(self, site: Site, tenant: str) -> bool:
        if site.revoked:
            return False
        if tenant == SYSTEM_TENANT:
            return True
        return any(t in site.tenants for t in self._ancestors(tenant) if t != SYSTEM_TENANT)

    async def _retarget(self, states: Iterable[_DeploymentState], force: bool = False) -> None:
        """Start a rollout where a deployment's resolved version changed, then recompute."""
        now = self.clock()
        changed: list[tuple[str, dict[str, Any] | None]] = []
        for state in states:
            target = (self.latest_version(state.spec.application)
                      if state.spec.version == dep.LATEST else state.spec.version)
            if target is None:
                continue
            current = state.rollout
            if current is not None and current.target == target and not (
                    force and current.phase in (dep.Phase.PAUSED, dep.Phase.ROLLED_BACK)):
                continue
            sites = [s.name for s in self.deployment_sites(state)]
            rollout = dep.start_rollout(current, target, sites, now)
            state.rollout = dep.advance(state.spec, rollout, self._views(state), now)
            state.record.rollout = state.rollout.to_json()
            changed.append((state.record.name, state.record.rollout))
        if changed:
            await self.store.save_rollouts(changed)
        await self._recompute()
        self._rollout_wakeup.set()

    def _views(self, state: _DeploymentState) -> list[dep.SiteView]:
        app = state.spec.application
        views = []
        for site in self.sites.values():
            # sites that never enrolled get the application when they do; a rollout does
            # not wait for them
            if site.enrolled is None or not self._eligible(site, state.record.tenant):
                continue
            in_sync = site.in_sync
            views.append(dep.SiteView(
                name=site.name, labels=site.all_labels, in_sync=in_sync,
                ready_since=site.ready.get(app) if in_sync else None,
                failed=site.failed.get(app, "") if in_sync else ""))
        return views

    async def _advance_rollouts(self) -> None:
        now = self.clock()
        changed: list[tuple[str, dict[str, Any] | None]] = []
        async with self._lock:
            for state in self.deployments.values():
                if state.rollout is None or state.rollout.phase.finished:
                    continue
                rollout = dep.advance(state.spec, state.rollout, self._views(state), now)
                if rollout != state.rollout:
                    if rollout.phase is not state.rollout.phase:
                        log.info("deployment %s: rollout of %s is %s %s", state.record.name,
                                 rollout.target, rollout.phase.value, rollout.message)
                    state.rollout = rollout
                    state.record.rollout = rollout.to_json()
                    changed.append((state.record.name, state.record.rollout))
            if changed:
                await self.store.save_rollouts(changed)
                await self._recompute()

    async def _rollouts_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rollout_wakeup.wait(), ROLLOUT_TICK_SECONDS)
            self._rollout_wakeup.clear()
            try:
                await self._advance_rollouts()
            except Exception:
                log.exception("advancing rollouts failed; trying again")

    # --- desired state --------------------------------------------------------------------

    async def _recompute(self, names: Iterable[str] | None = None) -> None:
        """Give every site in `names` (default: all) whose desired state changed a new revision."""
        placements = [(d.spec, d.rollout, d.record.tenant) for d in self.deployments.values()]
        tenants = {d.record.tenant for d in self.deployments.values()}
        changes: list[tuple[str, int, str]] = []
        for name in (self.sites if names is None else list(names)):
            site = self.sites[name]
            eligible = {t: self._eligible(site, t) for t in tenants}
            placed = dep.applications_for_site(site.all_labels, placements, eligible)
            digest = hashlib.sha256(canonical_json(
                [[p.application, p.version, p.tenant, p.deployment] for p in placed]
            )).hexdigest()
            self.desired.remember(digest, placed)
            if digest != site.digest:
                site.revision += 1
                site.digest = digest
                site.ready, site.failed = {}, {}
                changes.append((name, site.revision, digest))
        if changes:
            await self.store.save_revisions(changes)
            self.metrics.inc("revisions_total", len(changes))
            for name, _, _ in changes:
                self.desired.wake(name)

    def desired_body(self, site: Site) -> bytes:
        """The site's desired state: {revision, applications: [{name, version, tenant, spec}]}."""
        return self.desired.body(site.revision, site.digest, self.apps)

    async def wait_desired(self, site: Site, revision: int, wait: float) -> bytes | None:
        """The desired state once its revision differs from `revision`; None after `wait`."""
        self.touch(site.name)
        if site.revision != revision:
            return self.desired_body(site)
        if wait <= 0:
            return None
        try:
            woken = await self.desired.wait(site.name, wait)
        finally:
            self.touch(site.name)
        current = self.sites.get(site.name)
        if not woken or current is None or current.revoked or current.revision == revision:
            return None
        return self.desired_body(current)

    def touch(self, site: str) -> None:
        now = self.clock()
        self._contacts[site] = now
        record = self.sites.get(site)
        if record is not None:
            record.last_contact = now

    async def _flush_contacts(self) -> None:
        if self._contacts:
            contacts, self._contacts = self._contacts, {}
            await self.store.save_contacts(contacts.items())

    async def _flush_contacts_forever(self) -> None:
        while True:
            await asyncio.sleep(CONTACT_FLUSH_SECONDS)
            try:
                await self._flush_contacts()
            except Exception:
                log.exception("saving last contact times failed")

    # --- status ---------------------------------------------------------------------------

    async def push_status(self, site: Site, seq: Any, status: Any,
                          events: Any) -> StatusResult:
        """Apply a status batch exactly once (see `Store.apply_status`)."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise Invalid("seq must be a positive integer")
        if status is not None and not isinstance(status, dict):
            raise Invalid("status must be an object or null")
        if not isinstance(events, list) or len(events) > MAX_EVENTS_PER_BATCH:
            raise Invalid(f"events must be a list of at most {MAX_EVENTS_PER_BATCH}")
        self.touch(site.name)
        now = self.clock()
        updated = copy_site(site)
        if status is not None:
            updated.status = status
            updated.status_time = now
            instances = status.get("instances", [])
            if not isinstance(instances, list) or not all(isinstance(i, dict) for i in instances):
                raise Invalid("status.instances must be a list of objects")
            if updated.in_sync:
                versions = {p.application: p.version for p in self.desired.placed(site.digest)}
                updated.ready, updated.failed = dep.observe_status(site.ready, instances,
                                                                   versions, now)
            else:
                updated.ready, updated.failed = {}, {}
        result = await self.store.apply_status(updated, seq, events, now)
        if result.applied:
            current = self.sites.get(site.name)
            if current is not None:
                current.last_seq = seq
                if status is not None:
                    current.status, current.status_time = updated.status, now
                    if current.revision == updated.revision:
                        current.ready, current.failed = updated.ready, updated.failed
            self.metrics.inc("status_batches_applied_total")
            self.metrics.inc("events_received_total", len(events))
        else:
            self.metrics.inc("status_batches_duplicate_total")
        return result

    async def site_events(self, who: Principal, name: str, limit: int) -> list[dict[str, Any]]:
        self.site(who, name)
        return await self.store.site_events(name, limit)


