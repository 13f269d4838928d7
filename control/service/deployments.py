"""Deployments and their rollouts: the decisions are `control.fleet`; this stores and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any

from control.fleet import deployments as dep
from control.fleet import rollout as ro
from control.fleet.access import Principal
from control.fleet.quota import check_deployment_quota
from control.fleet.rollout import Phase, Rollout
from control.fleet.state import DeploymentState
from control.model import Conflict, Deployment, Forbidden, Invalid, NotFound, Site
from control.service.core import Core

log = logging.getLogger(__name__)


def _draft(spec: dep.DeploymentSpec, tenant: str) -> Deployment:
    """A record for `spec` to ask the fleet where it would place (never stored)."""
    return Deployment(spec.name, tenant, {}, 0.0, 0.0)

ROLLOUT_TICK_SECONDS = 1.0


class Deployments:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def load(self) -> None:
        records = await self.core.store.deployments.load()
        self.core.fleet.deployments = {}  # all there are: a reload drops deleted ones
        for record in records:
            spec = dep.parse_deployment(record.document, stored=True)
            rollout = Rollout.from_json(record.rollout) if record.rollout else None
            self.core.fleet.deployments[record.name] = DeploymentState(record, spec, rollout)

    def _check(self, who: Principal, document: Any) -> dep.DeploymentSpec:
        fleet = self.core.fleet
        try:
            spec = dep.parse_deployment(document)
        except dep.DeploymentError as e:
            raise Invalid(f"the deployment spec is not valid: {e}", e.errors) from e
        existing = fleet.deployments.get(spec.name)
        if existing is not None and existing.record.tenant not in who.visible:
            raise Forbidden(f"deployment {spec.name} belongs to another tenant")
        owners = {a.tenant for (n, _), a in fleet.apps.items() if n == spec.application}
        if not owners or not owners & who.visible:
            raise Invalid(
                f"application: {spec.application!r} does not exist (push it first)",
                [("application", f"unknown application {spec.application!r}")],
            )
        if spec.version != dep.LATEST and (spec.application, spec.version) not in fleet.apps:
            raise Invalid(
                f"version: application {spec.application} has no version {spec.version!r}",
                [("version", f"unknown version {spec.version!r}")],
            )
        tenant = existing.record.tenant if existing is not None else who.tenant
        sites = fleet.deployment_sites(DeploymentState(_draft(spec, tenant), spec))
        problem = dep.canary_problem(spec, [s.all_labels for s in sites])
        if problem:
            raise Invalid(f"strategy.canary-sites: {problem}", [("strategy.canary-sites", problem)])
        for other in fleet.deployments.values():
            if other.record.name == spec.name or other.spec.application != spec.application:
                continue
            shared = sorted(
                {s.name for s in sites} & {s.name for s in fleet.deployment_sites(other)}
            )
            if shared:
                raise Conflict(
                    f"deployments {spec.name} and {other.record.name} would both place "
                    f"application {spec.application} on site {shared[0]}"
                    + (f" and {len(shared) - 1} more" if len(shared) > 1 else "")
                )
        return spec

    async def put(self, who: Principal, document: Any) -> tuple[str, Deployment]:
        """Create or change a deployment; returns ("created" | "updated" | "unchanged", it)."""
        spec = self._check(who, document)
        self.core.refuse_owned("deployment", spec.name)
        canonical = dep.deployment_to_document(spec)
        core, fleet = self.core, self.core.fleet
        now = core.clock()
        async with core.lock:
            existing = fleet.deployments.get(spec.name)
            owner = existing.record.tenant if existing is not None else who.tenant
            if existing is None or existing.record.tenant in who.visible:
                check_deployment_quota(fleet, spec, owner)
            if existing is not None:
                if existing.record.tenant not in who.visible:
                    raise Forbidden(f"deployment {spec.name} belongs to another tenant")
                finished_badly = existing.rollout is not None and existing.rollout.phase in (
                    Phase.PAUSED,
                    Phase.ROLLED_BACK,
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
            await core.store.deployments.put(record)
            fleet.deployments[spec.name] = state
            await core.retarget([state], force=True)
        return outcome, record

    async def delete(self, who: Principal, name: str) -> None:
        self.get(who, name)
        self.core.refuse_owned("deployment", name)
        core = self.core
        async with core.lock:
            await core.store.deployments.delete(name)
            del core.fleet.deployments[name]
            await core.recompute()

    def get(self, who: Principal, name: str) -> DeploymentState:
        state = self.core.fleet.deployments.get(name)
        if state is None or state.record.tenant not in who.visible:
            raise NotFound(f"deployment {name} does not exist")
        return state

    def visible(self, who: Principal) -> list[DeploymentState]:
        return [
            d
            for _, d in sorted(self.core.fleet.deployments.items())
            if d.record.tenant in who.visible
        ]

    def sites(self, state: DeploymentState) -> list[Site]:
        return self.core.fleet.deployment_sites(state)

    async def pause(self, who: Principal, name: str, reason: str = "") -> DeploymentState:
        """Hold the rollout where it is: no further site moves until `resume`."""
        return await self._act(who, name, "pause", lambda r, now: ro.pause(r, now), reason)

    async def resume(self, who: Principal, name: str, reason: str = "") -> DeploymentState:
        return await self._act(who, name, "resume", lambda r, now: ro.resume(r, now), reason)

    async def rollback(self, who: Principal, name: str, reason: str = "") -> DeploymentState:
        """Every site that moved goes back to the version it ran before the rollout."""
        why = "rolled back by an operator"
        return await self._act(who, name, "roll back", lambda r, now: ro.roll_back(r, now, why),
                               reason)  # fmt: skip

    async def _act(
        self, who: Principal, name: str, what: str, action: ro.Action, reason: str
    ) -> DeploymentState:
        core = self.core
        async with core.lock:
            state = self.get(who, name)
            if state.rollout is None:
                raise Conflict(f"deployment {name} has not rolled anything out: nothing to {what}")
            try:
                rollout = action(state.rollout, core.clock())
            except ro.RolloutError as e:
                raise Conflict(f"deployment {name}: {e}") from None
            if reason:
                rollout = replace(rollout, message=f"{rollout.message}: {reason}")
            state.rollout = rollout
            state.record.rollout = rollout.to_json()
            await core.store.deployments.save_rollouts([(name, state.record.rollout)])
            await core.recompute()
        core.rollout_wakeup.set()
        log.info("deployment %s: %s by an operator (%s)", name, what, rollout.phase.value)
        return state

    async def advance_rollouts(self) -> None:
        core = self.core
        if not core.leads():  # another control process moves them on
            return
        async with core.lock:
            changed = core.fleet.advance_rollouts(core.clock())
            if changed:
                await core.store.deployments.save_rollouts(changed)
                await core.recompute()

    async def run_rollouts(self) -> None:
        """Move rollouts on every tick, and at once after a change."""
        wakeup = self.core.rollout_wakeup
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), ROLLOUT_TICK_SECONDS)
            wakeup.clear()
            try:
                await self.advance_rollouts()
            except Exception:
                log.exception("advancing rollouts failed; trying again")
