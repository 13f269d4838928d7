"""The reconcile plan: desired versus observed, as buckets of actions (Nomad's reconciler).

Pure and synchronous. The instance worker observes Docker, calls `plan_instance`, and carries
out the actions in order; the site-level `plan_site` says which instances need a worker and
which networks are no longer needed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from enforcer.reconcile.instances import ContainerConfig, DesiredInstance
from enforcer.shared.spec.model import RestartPolicy


class Op(enum.Enum):
    PULL = "pull"  # image missing locally
    CREATE = "create"  # create and start
    RECREATE = "recreate"  # config changed: stop, remove, create, start
    START = "start"  # exited container that should run again (restart)
    RESTART = "restart"  # running, but must restart (liveness failed, owner restarted)
    WAIT = "wait"  # exited, restart is due later (backoff)
    KEEP_EXITED = "keep-exited"  # exited for good by its restart policy
    REMOVE = "remove"  # not desired (stop with its timeout, then remove)
    OK = "ok"


@dataclass(frozen=True)
class Observed:
    """One container as the worker saw it (from list + inspect)."""

    id: str
    container: str  # the spec's container name (label edgeward.container)
    config_hash: str
    running: bool
    exit_code: int | None
    started_at: str  # RFC 3339 from Docker; compared as strings within one engine
    restarting_due: float | None = None  # next retry time from the restart tracker


@dataclass(frozen=True)
class Action:
    op: Op
    container: str  # spec container name ('' for instance-wide)
    container_id: str = ""
    reason: str = ""


def wants_restart(policy: RestartPolicy, exit_code: int | None) -> bool:
    if policy is RestartPolicy.ALWAYS:
        return True
    if policy is RestartPolicy.ON_FAILURE:
        return exit_code != 0
    return False


def plan_instance(
    desired: DesiredInstance | None,
    observed: Sequence[Observed],
    image_ids: Mapping[str, str | None],
    *,
    now: float,
    liveness_failed: frozenset[str] = frozenset(),
) -> list[Action]:
    """Actions that bring one instance's containers to `desired` (None: remove it all).

    `image_ids` maps each image reference of the instance to its local id (None: not pulled).
    The owner container (first) is always planned first: followers join its namespace.
    """
    if desired is None:
        return [Action(Op.REMOVE, o.container, o.id, "not desired") for o in observed]

    actions: list[Action] = []
    by_name: dict[str, list[Observed]] = {}
    for o in observed:
        by_name.setdefault(o.container, []).append(o)
    wanted = {c.name for c in desired.containers}
    for name, group in sorted(by_name.items()):
        extras = group if name not in wanted else group[1:]
        actions.extend(Action(Op.REMOVE, name, o.id, "not in the spec") for o in extras)

    missing = sorted({c.image for c in desired.containers if image_ids.get(c.image) is None})
    if missing:
        return actions + [Action(Op.PULL, "", "", ref) for ref in missing]

    owner_started: str | None = None
    owner_replaced = False
    for cfg in desired.containers:
        current = by_name.get(cfg.name, [None])[0]
        action = _plan_container(cfg, current, image_ids[cfg.image] or "", now, liveness_failed)
        if cfg.owner:
            owner_replaced = action.op in (Op.CREATE, Op.RECREATE, Op.START, Op.RESTART)
            owner_started = current.started_at if current is not None else None
        elif action.op is Op.OK and current is not None:
            if owner_replaced:
                action = Action(Op.RESTART, cfg.name, current.id, "owner of the namespace restarts")
            elif owner_started and current.started_at < owner_started:
                action = Action(Op.RESTART, cfg.name, current.id, "owner restarted before it")
        elif owner_replaced and action.op is Op.WAIT and current is not None:
            action = Action(Op.START, cfg.name, current.id, "owner of the namespace restarts")
        actions.append(action)
    return actions


def _plan_container(
    cfg: ContainerConfig,
    current: Observed | None,
    image_id: str,
    now: float,
    liveness_failed: frozenset[str],
) -> Action:
    if current is None:
        return Action(Op.CREATE, cfg.name, "", "missing")
    if current.config_hash != cfg.config_hash(image_id):
        return Action(Op.RECREATE, cfg.name, current.id, "spec changed")
    if current.running:
        if cfg.name in liveness_failed:
            return Action(Op.RESTART, cfg.name, current.id, "liveness probe failed")
        return Action(Op.OK, cfg.name, current.id)
    if not wants_restart(cfg.restart, current.exit_code):
        return Action(Op.KEEP_EXITED, cfg.name, current.id, f"exited ({current.exit_code})")
    if current.restarting_due is not None and current.restarting_due > now:
        return Action(Op.WAIT, cfg.name, current.id, f"exited ({current.exit_code})")
    return Action(Op.START, cfg.name, current.id, f"exited ({current.exit_code})")


@dataclass(frozen=True)
class SitePlan:
    workers: frozenset[str]  # instances that need a worker: desired, or with leftovers
    remove_networks: frozenset[str]  # managed networks that no desired instance uses


def plan_site(
    desired: Mapping[str, DesiredInstance],
    observed_instances: Sequence[str],
    managed_networks: Sequence[str],
) -> SitePlan:
    needed_networks = {d.network for d in desired.values()}
    return SitePlan(
        workers=frozenset(desired) | frozenset(observed_instances),
        remove_networks=frozenset(n for n in managed_networks if n not in needed_networks),
    )
