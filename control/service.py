"""Control's operations: checks, the store, and the in-memory fleet (`control.fleet.state`).

Every change (a push, a deployment, a relabel, a rollout step) recomputes the desired state of
the sites it may touch; a site whose set of (application, version) changed gets a new revision
and its waiting long-poll is woken through an `asyncio.Event`, so an idle site costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from control.fleet import deployments as dep
from control.fleet.access import Principal, new_token, token_hash
from control.fleet.quota import check_deployment_quota, check_quota_document
from control.fleet.state import DeploymentState, Fleet
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
from control.store.sqlite import Store
from control.vaults.envelope import MASTER_KEY_FILE, Envelope
from control.vaults.operations import VaultOperations
from enforcer.link.enrollment import Bundle, encode_bundle
from enforcer.shared.spec.parse import SpecError, application_to_document, parse_application

log = logging.getLogger(__name__)

VERSIONS_KEPT = 10
CONTACT_FLUSH_SECONDS = 10.0
ROLLOUT_TICK_SECONDS = 1.0
MAX_EVENTS_PER_BATCH = 1000


@dataclass
class Metrics:
    counters: dict[str, int] = field(default_factory=dict)

    def inc(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by


class ControlService(VaultOperations):
    def __init__(
        self,
        store: Store,
        authority: Authority,
        url: str,
        clock: Callable[[], float] = time.time,
        envelope: Envelope | None = None,
        master_key_path: Path = Path(MASTER_KEY_FILE),
    ) -> None:
        self.store = store
        # without a master key (tests): one for this process only
        self.envelope = envelope or Envelope(os.urandom(32))
        self.master_key_path = master_key_path
        self._sealed = {}
        self.authority = authority
        self.url = url
        self.clock = clock
        self.metrics = Metrics()
        self.fleet = Fleet()
        # the fleet's parts, shared (the fleet only ever changes them in place)
        self.sites = self.fleet.sites
        self.tenants = self.fleet.tenants
        self.deployments = self.fleet.deployments
        self.desired = self.fleet.desired
        self._contacts: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._rollout_wakeup = asyncio.Event()
        self._lock = asyncio.Lock()  # serialises changes to the desired state

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.tenants.update((t.name, t) for t in await self.store.list_tenants())
        self.sites.update((s.name, s) for s in await self.store.load_sites())
        await self._load_apps()
        await self._load_vaults()
        for record in await self.store.list_deployments():
            spec = dep.parse_deployment(record.document)
            rollout = dep.Rollout.from_json(record.rollout) if record.rollout else None
            self.deployments[record.name] = DeploymentState(record, spec, rollout)
        async with self._lock:
            await self._recompute()
        self._tasks = [
            asyncio.create_task(self._flush_contacts_forever(), name="control-contacts"),
            asyncio.create_task(self._rollouts_forever(), name="control-rollouts"),
        ]

    @property
    def apps(self) -> dict[tuple[str, str], AppVersion]:
        return self.fleet.apps

    async def _load_apps(self) -> None:
        self.fleet.apps = {(a.name, a.version): a for a in await self.store.app_versions()}

    async def stop(self) -> None:
        for task in self._tasks:
            # Python 3.11's wait_for may swallow a cancellation that races its inner wait:
            # cancel again until the task is done
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
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
        return Principal(tenant, frozenset(self.fleet.subtree(tenant)))

    async def create_tenant(
        self, who: Principal, name: str, parent: str | None, quota: Any = None
    ) -> Tenant:
        check_name(name, "tenant")
        parent = parent or who.tenant
        who.require_visible(parent, f"tenant {parent!r}")
        limits = check_quota_document(quota)
        if name in self.tenants:
            raise Conflict(f"tenant {name!r} already exists")
        tenant = await self.store.create_tenant(name, parent, self.clock(), limits)
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
        return [
            s for _, s in sorted(self.sites.items()) if who.is_admin or who.visible & set(s.tenants)
        ]

    async def site_token(
        self, who: Principal, name: str, labels: dict[str, str] | None, ttl: float
    ) -> tuple[str, float]:
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
                site = copy_site(
                    existing, labels=dict(labels if labels is not None else existing.labels)
                )
            expires = now + ttl
            await self.store.create_enrollment(token_hash(secret), site, expires, now)
            self.sites[name] = site
            await self._recompute([name])
        bundle = Bundle(self.url, self.authority.fingerprint, secret, name)
        return encode_bundle(bundle), expires

    async def enroll(self, site: str, secret: str, csr_pem: str) -> bytes:
        if site not in self.sites:
            raise Forbidden(
                "the enrollment bundle is not valid: control does not know its "
                "secret (issue a new one with `edge-control site token`)"
            )
        cert_pem, serial = self.authority.sign_site(csr_pem.encode(), site)
        public_key = (
            x509.load_pem_x509_certificate(cert_pem)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        async with self._lock:
            now = self.clock()
            await self.store.consume_enrollment(token_hash(secret), site, serial, now, public_key)
            record = self.sites[site]
            record.cert_serial, record.enrolled, record.revoked = serial, now, False
            record.public_key = public_key
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

    async def label_site(self, who: Principal, name: str, changes: dict[str, str | None]) -> Site:
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
            raise Forbidden(
                f"the certificate of site {name!r} is not valid any more "
                "(replaced by a newer enrollment, or the site was removed)"
            )
        if site.revoked:
            raise Forbidden(f"site {name!r} is revoked")
        return site

    # --- applications ---------------------------------------------------------------------

    async def push_app(
        self, who: Principal, name: str, version: str, document: Any
    ) -> tuple[bool, AppVersion]:
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
        self.check_secret_references(who, canonical)
        digest = hashlib.sha256(canonical_json(canonical)).hexdigest()
        record = AppVersion(name, version, tenant, canonical, digest, self.clock())
        owner = next((a.tenant for (n, _), a in self.apps.items() if n == name), None)
        if owner is not None and owner not in who.visible:
            raise Forbidden(f"application {name} belongs to another tenant")
        protected = self.fleet.protected_versions(name)
        async with self._lock:
            created = await self.store.put_app_version(record, VERSIONS_KEPT, protected)
            if not created:
                return False, self.apps.get((name, version), record)
            await self._load_apps()
            await self._retarget(
                [
                    d
                    for d in self.deployments.values()
                    if d.spec.application == name and d.spec.version == dep.LATEST
                ]
            )
        return True, record

    def latest_version(self, app: str) -> str | None:
        return self.fleet.latest_version(app)

    def list_apps(self, who: Principal) -> list[AppVersion]:
        return sorted(
            (a for a in self.apps.values() if a.tenant in who.visible),
            key=lambda a: (a.name, a.created),
        )

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
        existing_owner = self.deployments.get(spec.name)
        if existing_owner is not None and existing_owner.record.tenant not in who.visible:
            raise Forbidden(f"deployment {spec.name} belongs to another tenant")
        owners = {a.tenant for (n, _), a in self.apps.items() if n == spec.application}
        if not owners or not owners & who.visible:
            raise Invalid(
                f"application: {spec.application!r} does not exist (push it first)",
                [("application", f"unknown application {spec.application!r}")],
            )
        if spec.version != dep.LATEST and (spec.application, spec.version) not in self.apps:
            raise Invalid(
                f"version: application {spec.application} has no version {spec.version!r}",
                [("version", f"unknown version {spec.version!r}")],
            )
        canonical = dep.deployment_to_document(spec)
        now = self.clock()
        async with self._lock:
            existing = self.deployments.get(spec.name)
            owner = existing.record.tenant if existing is not None else who.tenant
            if existing is None or existing.record.tenant in who.visible:
                check_deployment_quota(self.fleet, spec, owner)
            if existing is not None:
                if existing.record.tenant not in who.visible:
                    raise Forbidden(f"deployment {spec.name} belongs to another tenant")
                finished_badly = existing.rollout is not None and existing.rollout.phase in (
                    dep.Phase.PAUSED,
                    dep.Phase.ROLLED_BACK,
                )
                if existing.record.document == canonical and not finished_badly:
                    return "unchanged", existing.record
                record = Deployment(
                    spec.name,
                    existing.record.tenant,
                    canonical,
                    existing.record.created,
                    now,
                    existing.record.rollout,
                )
                outcome = "updated"
            else:
                record = Deployment(spec.name, who.tenant, canonical, now, now)
                outcome = "created"
            state = DeploymentState(record, spec, existing.rollout if existing else None)
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

    def deployment(self, who: Principal, name: str) -> DeploymentState:
        state = self.deployments.get(name)
        if state is None or state.record.tenant not in who.visible:
            raise NotFound(f"deployment {name} does not exist")
        return state

    def list_deployments(self, who: Principal) -> list[DeploymentState]:
        return [d for _, d in sorted(self.deployments.items()) if d.record.tenant in who.visible]

    def deployment_sites(self, state: DeploymentState) -> list[Site]:
        return self.fleet.deployment_sites(state)

    async def _retarget(self, states: Iterable[DeploymentState], force: bool = False) -> None:
        """Start rollouts where a deployment's resolved version changed, then recompute."""
        changed = self.fleet.retarget(states, self.clock(), force)
        if changed:
            await self.store.save_rollouts(changed)
        await self._recompute()
        self._rollout_wakeup.set()

    async def _advance_rollouts(self) -> None:
        async with self._lock:
            changed = self.fleet.advance_rollouts(self.clock())
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
        """Give every site in `names` (default: all) whose desired state changed a new revision,
        and answer its waiting long-poll."""
        changes = self.fleet.recompute(names)
        if changes:
            # Answer the waiting sites first: should saving fail, the next start recomputes
            # the same digests and gives them the same revision numbers again.
            for name, _, _ in changes:
                self.desired.wake(name)
            self.metrics.inc("revisions_total", len(changes))
            await self.store.save_revisions(changes)

    def desired_body(self, site: Site) -> bytes:
        """The site's desired state, with its vaults sealed to its key and the quotas of the
        tenants whose applications it runs (the enforcer holds the site to them too)."""
        body = self.fleet.desired_body(site)
        vaults = json.dumps(self.sealed_vaults(site), separators=(",", ":")).encode()
        quotas = json.dumps(self.site_quotas(site), separators=(",", ":")).encode()
        return body[:-1] + b',"vaults":' + vaults + b',"quotas":' + quotas + b"}"

    def site_quotas(self, site: Site) -> list[dict[str, Any]]:
        """``[{tenant, members, quota}]``: every tenant with a quota above a placed app's tenant."""
        fleet = self.fleet
        limiters = sorted(
            {
                t
                for p in fleet.desired.placed(site.digest)
                for t in fleet.ancestors(p.tenant)
                if t in fleet.tenants and fleet.tenants[t].quota
            }
        )
        return [
            {
                "tenant": t,
                "members": sorted(fleet.subtree(t)),
                "quota": dict(fleet.tenants[t].quota),
            }
            for t in limiters
        ]

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

    async def push_status(self, site: Site, seq: Any, status: Any, events: Any) -> StatusResult:
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
                updated.ready, updated.failed = dep.observe_status(
                    site.ready, instances, versions, now
                )
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
        """The site's events; a tenant sees only those about its (and sub-tenants') apps."""
        self.site(who, name)
        events = await self.store.site_events(name, limit)
        if who.is_admin:
            return events
        return [e for e in events if self.visible_app(who, _event_app(e.get("event")))]

    def visible_app(self, who: Principal, app: Any) -> bool:
        if not isinstance(app, str):
            return False
        owner = next((a.tenant for (n, _), a in self.apps.items() if n == app), None)
        return owner is not None and owner in who.visible


def _event_app(event: Any) -> Any:
    if not isinstance(event, dict):
        return None
    app = event.get("app")
    if app is None and isinstance(event.get("instance"), str):
        app = event["instance"].split(".", 1)[0]
    return app
