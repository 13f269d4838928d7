"""The fleet as control holds it in memory, and the computations over it (no I/O).

`Fleet` keeps tenants, sites, application versions and deployments as loaded from the store.
`recompute` gives sites whose desired state changed a new revision, `retarget` starts rollouts
where a deployment's resolved version changed, and `advance_rollouts` moves them on; each
returns what changed, and the service persists it and wakes the long-polls.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from control.fleet import deployments as dep
from control.fleet.desired import DesiredStates
from control.fleet.placement import applications_for_site
from control.fleet.rollout import Phase, Rollout, SiteView, advance, start_rollout
from control.model import SYSTEM_TENANT, AppVersion, Deployment, Site, Tenant, canonical_json
from control.vaults.envelope import Vault, distributed_to

log = logging.getLogger(__name__)

RolloutChange = tuple[str, dict[str, Any] | None]

# A site with no long-poll open and no contact for this long is offline: longer than a site's
# long-poll waits (300 s), so that a quiet site between two polls never counts as offline.
OFFLINE_AFTER = 330.0


@dataclass
class DeploymentState:
    record: Deployment
    spec: dep.DeploymentSpec
    rollout: Rollout | None = None


class Fleet:
    def __init__(self) -> None:
        self.tenants: dict[str, Tenant] = {}
        self.sites: dict[str, Site] = {}
        self.apps: dict[tuple[str, str], AppVersion] = {}
        self.deployments: dict[str, DeploymentState] = {}
        self.vaults: dict[str, Vault] = {}
        self.desired = DesiredStates()

    # --- tenants --------------------------------------------------------------------------

    def subtree(self, root: str) -> set[str]:
        """`root` and every tenant below it."""
        found = {root}
        changed = True
        while changed:
            changed = False
            for t in self.tenants.values():
                if t.parent in found and t.name not in found:
                    found.add(t.name)
                    changed = True
        return found

    def ancestors(self, tenant: str) -> list[str]:
        """`tenant`, its parent, ... up to the root."""
        chain = []
        current: str | None = tenant
        while current is not None and current in self.tenants:
            chain.append(current)
            current = self.tenants[current].parent
        return chain

    def eligible(self, site: Site, tenant: str) -> bool:
        """Whether `tenant` may deploy to `site`: system anywhere, others where assigned."""
        if site.revoked:
            return False
        if tenant == SYSTEM_TENANT:
            return True
        return any(t in site.tenants for t in self.ancestors(tenant) if t != SYSTEM_TENANT)

    # --- applications ---------------------------------------------------------------------

    def latest_version(self, app: str) -> str | None:
        versions = sorted(
            (a for (n, _), a in self.apps.items() if n == app), key=lambda a: a.created
        )
        return versions[-1].version if versions else None

    def app_owner(self, app: str) -> str | None:
        """The tenant that owns application `app`; None when there is no such application."""
        return next((a.tenant for (n, _), a in self.apps.items() if n == app), None)

    def app_visible(self, visible: Collection[str], app: Any) -> bool:
        """Whether `app` names an application of one of the `visible` tenants."""
        owner = self.app_owner(app) if isinstance(app, str) else None
        return owner is not None and owner in visible

    def protected_versions(self, app: str) -> set[str]:
        """Versions of `app` that deployments and rollouts still name (never pruned)."""
        kept: set[str] = set()
        for d in self.deployments.values():
            if d.spec.application != app:
                continue
            kept.add(d.spec.version)
            if d.rollout is not None:
                kept.add(d.rollout.target)
                kept.update(d.rollout.baseline.values())
        return kept

    # --- deployments and rollouts ---------------------------------------------------------

    def deployment_sites(self, state: DeploymentState) -> list[Site]:
        """The sites the deployment may place on that match it."""
        return [
            s
            for s in self.sites.values()
            if self.eligible(s, state.record.tenant) and state.spec.matches(s.all_labels)
        ]

    def online(self, site: Site, now: float) -> bool:
        """Whether `site`'s link is up: a long-poll open now, or a contact not long ago."""
        if site.name in self.desired.polling:
            return True
        return site.last_contact is not None and now - site.last_contact < OFFLINE_AFTER

    def views(self, state: DeploymentState, now: float) -> list[SiteView]:
        """What the rollout of `state` sees of each site it may place on."""
        app = state.spec.application
        views = []
        for site in self.sites.values():
            # sites that never enrolled get the application when they do; a rollout does
            # not wait for them
            if site.enrolled is None or not self.eligible(site, state.record.tenant):
                continue
            in_sync = site.in_sync
            views.append(
                SiteView(
                    name=site.name,
                    labels=site.all_labels,
                    in_sync=in_sync,
                    ready_since=site.ready.get(app) if in_sync else None,
                    failed=site.failed.get(app, "") if in_sync else "",
                    online=self.online(site, now),
                )
            )
        return views

    def retarget(
        self, states: Iterable[DeploymentState], now: float, force: bool = False
    ) -> list[RolloutChange]:
        """Start a rollout where a deployment's resolved version changed (or, with `force`,
        where the last one paused or rolled back)."""
        changed: list[RolloutChange] = []
        for state in states:
            target = (
                self.latest_version(state.spec.application)
                if state.spec.version == dep.LATEST
                else state.spec.version
            )
            if target is None:
                continue
            current = state.rollout
            if (
                current is not None
                and current.target == target
                and not (force and current.phase in (Phase.PAUSED, Phase.ROLLED_BACK))
            ):
                continue
            sites = [s.name for s in self.deployment_sites(state)]
            rollout = start_rollout(current, target, sites, now)
            state.rollout = advance(state.spec, rollout, self.views(state, now), now)
            state.record.rollout = state.rollout.to_json()
            changed.append((state.record.name, state.record.rollout))
        return changed

    def advance_rollouts(self, now: float) -> list[RolloutChange]:
        """Move every active rollout on; returns those whose phase or sites changed."""
        changed: list[RolloutChange] = []
        for state in self.deployments.values():
            if state.rollout is None or state.rollout.phase.finished:
                continue
            previous = state.rollout
            rollout = advance(state.spec, previous, self.views(state, now), now)
            state.rollout = rollout
            if (rollout.phase, rollout.updated) == (previous.phase, previous.updated):
                continue  # at most the message changed: nothing to place, nothing to store
            if rollout.phase is not previous.phase:
                log.info(
                    "deployment %s: rollout of %s is %s %s",
                    state.record.name,
                    rollout.target,
                    rollout.phase.value,
                    rollout.message,
                )
            state.record.rollout = rollout.to_json()
            changed.append((state.record.name, state.record.rollout))
        return changed

    # --- desired state --------------------------------------------------------------------

    def recompute(self, names: Iterable[str] | None = None) -> list[tuple[str, int, str]]:
        """New revisions (site, revision, digest) for the sites in `names` (default: all)
        whose set of (application, version) changed."""
        placements = [(d.spec, d.rollout, d.record.tenant) for d in self.deployments.values()]
        tenants = {d.record.tenant for d in self.deployments.values()}
        changes: list[tuple[str, int, str]] = []
        for name in self.sites if names is None else list(names):
            site = self.sites[name]
            eligible = {t: self.eligible(site, t) for t in tenants}
            placed = applications_for_site(site.all_labels, placements, eligible)
            listing: list[Any] = [
                [p.application, p.version, p.tenant, p.deployment] for p in placed
            ]
            vaults = self.vault_part(site)
            # the vault part only when there is one: digests from before vaults stay as they were
            digest_of: Any = [listing, [list(v) for v in vaults]] if vaults else listing
            digest = hashlib.sha256(canonical_json(digest_of)).hexdigest()
            self.desired.remember(digest, placed)
            if digest != site.digest:
                site.revision += 1
                site.digest = digest
                site.ready, site.failed = {}, {}
                changes.append((name, site.revision, digest))
        return changes

    def vault_part(self, site: Site) -> list[tuple[str, int, str]]:
        """(vault, version, unseal) of the vaults `site` receives, by name."""
        if not site.public_key:
            return []
        return [
            (v.name, v.version, v.unseal)
            for _, v in sorted(self.vaults.items())
            if distributed_to(v, site, self.eligible(site, v.tenant))
        ]

    def desired_body(self, site: Site) -> bytes:
        """The site's desired state: {revision, applications: [{name, version, tenant, spec}]}."""
        return self.desired.body(site.revision, site.digest, self.apps)
