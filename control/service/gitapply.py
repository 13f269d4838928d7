"""Applying a Git source's commit: plan it against what control holds, check its deployments as
`deploy` would, write it in one store transaction, and bring the fleet (and rollouts) to it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from control.fleet import deployments as dep
from control.fleet.quota import check_deployment_quota
from control.fleet.rollout import Rollout
from control.fleet.state import DeploymentState
from control.gitops.documents import Document, Kind, PlanError
from control.gitops.plan import Action, Change, Existing, Plan, PlanInvalid, plan
from control.gitops.source import GitSource
from control.model import AppVersion, Deployment, Invalid
from control.service.apps import VERSIONS_KEPT
from control.service.core import Core
from control.service.vaults import Vaults
from control.store.git import CommitWrite
from control.vaults.envelope import Vault


class Applier:
    def __init__(self, core: Core, vaults: Vaults) -> None:
        self.core = core
        self.vaults = vaults

    async def apply(
        self, source: GitSource, commit: str, documents: list[Document], now: float
    ) -> Plan:
        """Plan `documents` against what control holds, check, write in one transaction and
        roll out; PlanInvalid (nothing written) when the commit cannot be applied."""
        core, fleet = self.core, self.core.fleet
        visible = frozenset(fleet.subtree(source.tenant))
        async with core.lock:
            owned = frozenset(
                (Kind(kind), name) for (kind, name), s in core.owners.items() if s == source.name
            )
            existing = Existing(
                app_versions={k: a.digest for k, a in fleet.apps.items()},
                app_tenants={n: a.tenant for (n, _), a in fleet.apps.items()},
                deployments={
                    n: (d.record.tenant, d.record.document) for n, d in fleet.deployments.items()
                },
                vaults={
                    n: (v.tenant, {"name": n, "distribute": v.distribute, "unseal": v.unseal})
                    for n, v in fleet.vaults.items()
                },
                owners={(Kind(k), n): s for (k, n), s in core.owners.items()},
            )
            result = plan(
                source.name, source.tenant, visible, documents, existing, owned, source.prune
            )
            self._check_deployments(source, result.changes, now)
            write = await self._write(source, commit, result.changes, result.owned, now)
            await core.store.git.apply(write)
            await self._reload_after(write)
        return result

    def _check_deployments(self, source: GitSource, changes: Sequence[Change], now: float) -> None:
        """What `deploy` checks beyond the spec, for the commit's deployments as they will be:
        canary sites, two deployments of one application on a site, tenants' quotas. Raises
        PlanInvalid naming each deployment's file. The fleet is as it was afterwards."""
        fleet = self.core.fleet
        added = {
            (c.name, c.version): AppVersion(
                c.name, c.version, source.tenant, c.body or {}, c.digest, now
            )
            for c in changes
            if c.kind is Kind.APPLICATION and c.action is Action.CREATE
        }
        gone = {c.name for c in changes if c.kind is Kind.DEPLOYMENT and c.action is Action.REMOVE}
        states: dict[str, tuple[str, DeploymentState]] = {}
        for c in changes:
            if c.kind is Kind.DEPLOYMENT and c.action is not Action.REMOVE:
                old = fleet.deployments.get(c.name)
                tenant = old.record.tenant if old is not None else source.tenant
                record = Deployment(c.name, tenant, c.body or {}, now, now)
                states[c.name] = (c.file, DeploymentState(record, dep.parse_deployment(c.body)))
        if not states:
            return
        others = [d for n, d in fleet.deployments.items() if n not in gone and n not in states] + [
            state for _, state in states.values()
        ]
        errors: list[PlanError] = []
        saved = fleet.apps
        fleet.apps = {**fleet.apps, **added}  # synchronous: nothing else runs meanwhile
        try:
            for name, (file, state) in sorted(states.items()):
                spec = state.spec
                sites = fleet.deployment_sites(state)
                problem = dep.canary_problem(spec, [s.all_labels for s in sites])
                if problem:
                    errors.append(PlanError(file, "strategy.canary-sites", problem))
                for other in others:
                    if other.record.name == name or other.spec.application != spec.application:
                        continue
                    shared = sorted(
                        {s.name for s in sites} & {s.name for s in fleet.deployment_sites(other)}
                    )
                    if shared:
                        errors.append(
                            PlanError(
                                file,
                                "placement",
                                f"deployments {name} and {other.record.name} would both place "
                                f"application {spec.application} on site {shared[0]}",
                            )
                        )
                try:
                    check_deployment_quota(fleet, spec, state.record.tenant)
                except Invalid as e:
                    errors.append(PlanError(file, "placement", e.message))
        finally:
            fleet.apps = saved
        if errors:
            raise PlanInvalid(errors)

    async def _write(
        self, source: GitSource, commit: str, changes: Any, owned: Any, now: float
    ) -> CommitWrite:
        fleet = self.core.fleet
        apps: list[AppVersion] = []
        deployments: list[Deployment] = []
        vaults_created: list[Vault] = []
        vaults_changed: list[tuple[str, str, str]] = []
        removed: dict[Kind, list[str]] = {k: [] for k in Kind}
        for c in changes:
            if c.action is Action.REMOVE:
                removed[c.kind].append(c.name)
            elif c.kind is Kind.APPLICATION:
                apps.append(AppVersion(c.name, c.version, source.tenant, c.body, c.digest, now))
            elif c.kind is Kind.DEPLOYMENT:
                state = fleet.deployments.get(c.name)
                old = state.record if state is not None else None
                deployments.append(
                    Deployment(
                        c.name,
                        old.tenant if old else source.tenant,
                        c.body,
                        old.created if old else now,
                        now,
                        old.rollout if old else None,
                    )
                )
            elif c.action is Action.CREATE:
                envelope = self.vaults.envelope
                _, wrapped = await asyncio.to_thread(envelope.new_data_key, c.name)
                blob = await asyncio.to_thread(envelope.close_vault, wrapped, {}, c.name)
                vaults_created.append(
                    Vault(
                        c.name,
                        source.tenant,
                        c.body["distribute"],
                        c.body["unseal"],
                        1,
                        wrapped,
                        blob,
                        {},
                        now,
                        now,
                    )
                )
            else:
                vaults_changed.append((c.name, c.body["distribute"], c.body["unseal"]))
        return CommitWrite(
            source=source.name,
            commit=commit,
            at=now,
            apps=apps,
            apps_removed=removed[Kind.APPLICATION],
            versions_removed=self._oldest_versions(apps),
            deployments=deployments,
            deployments_removed=removed[Kind.DEPLOYMENT],
            vaults_created=vaults_created,
            vaults_changed=vaults_changed,
            vaults_removed=removed[Kind.VAULT],
            owned=sorted((k.value, n) for k, n in owned),
        )

    def _oldest_versions(self, added: Sequence[AppVersion]) -> list[tuple[str, str]]:
        """The versions beyond the newest `VERSIONS_KEPT` of each application that gets a new
        one (as `app push` keeps them), but never one that a deployment or rollout names."""
        fleet = self.core.fleet
        old: list[tuple[str, str]] = []
        for name in sorted({a.name for a in added}):
            versions = sorted(
                (a for (n, _), a in fleet.apps.items() if n == name),
                key=lambda a: a.created,
                reverse=True,
            )
            fresh = sum(1 for a in added if a.name == name)
            protected = fleet.protected_versions(name)
            beyond = versions[max(0, VERSIONS_KEPT - fresh) :]
            old += [(name, a.version) for a in beyond if a.version not in protected]
        return old

    async def _reload_after(self, write: CommitWrite) -> None:
        """Bring the fleet to what the store holds now and roll out what changed (under the
        lock)."""
        core, fleet = self.core, self.core.fleet
        fleet.apps = {(a.name, a.version): a for a in await core.store.apps.versions()}
        records = await core.store.deployments.load()
        changed_deployments = {d.name for d in write.deployments}
        created_apps = {a.name for a in write.apps}
        kept: dict[str, DeploymentState] = {}
        for record in records:
            spec = dep.parse_deployment(record.document, stored=True)
            state = fleet.deployments.get(record.name)
            if state is not None and record.name not in changed_deployments:
                kept[record.name] = state
                continue
            rollout = Rollout.from_json(record.rollout) if record.rollout else None
            kept[record.name] = DeploymentState(record, spec, rollout)
        fleet.deployments = kept
        await self.vaults.reload()
        for name in write.vaults_removed:
            self.vaults.forget_sealed(name)
        core.owners = dict(await core.store.git.owners())
        await core.retarget([fleet.deployments[n] for n in sorted(changed_deployments)], True)
        await core.retarget(
            d
            for n, d in fleet.deployments.items()
            if n not in changed_deployments
            and d.spec.application in created_apps
            and d.spec.version == dep.LATEST
        )
