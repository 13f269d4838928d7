"""The reconcile plan: each situation of an instance -> the actions that converge it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from enforcer.reconcile.instances import Context, DesiredInstance, desired_instance
from enforcer.reconcile.plan import Action, Observed, Op, plan_instance, plan_site
from enforcer.shared.spec import parse_application

NOW = 1_000_000.0
IMAGE = "sha256:aaaa"
CTX = Context(site="site", host="host-a")


def desired(restart: str = "always", *, sidecar: bool = False, cmd: str = "100") -> DesiredInstance:
    containers: list[dict[str, Any]] = [
        {"name": "main", "image": "busybox:1", "cmd": ["sleep", cmd], "restart": restart}
    ]
    if sidecar:
        containers.append({"name": "side", "image": "busybox:1", "cmd": ["sleep", "9"]})
    app = parse_application(
        {"name": "a", "version": "1", "services": [{"name": "s", "containers": containers}]}
    )
    return desired_instance(app, app.services[0], "a.s.0", CTX, instances_dir="/tmp/ew-plan")


D = desired()
D_SIDE = desired(sidecar=True)


def hash_of(d: DesiredInstance, name: str = "main") -> str:
    return next(c for c in d.containers if c.name == name).config_hash(IMAGE)


def seen(
    name: str = "main",
    *,
    running: bool = True,
    exit_code: int | None = None,
    started: str = "2026-01-01T00:00:01Z",
    due: float | None = None,
    config_hash: str | None = None,
    d: DesiredInstance = D,
    cid: str = "",
) -> Observed:
    return Observed(
        id=cid or f"id-{name}",
        container=name,
        config_hash=hash_of(d, name) if config_hash is None else config_hash,
        running=running,
        exit_code=exit_code,
        started_at=started,
        restarting_due=due,
    )


@dataclass(frozen=True)
class Case:
    desired: DesiredInstance | None
    observed: list[Observed]
    expected: list[tuple[Op, str]]
    images: dict[str, str | None] = field(default_factory=lambda: {"busybox:1": IMAGE})
    liveness_failed: frozenset[str] = frozenset()


CASES = {
    "nothing there: create": Case(D, [], [(Op.CREATE, "main")]),
    "running as specified: nothing to do": Case(D, [seen()], [(Op.OK, "main")]),
    "image not pulled: pull first, nothing created": Case(
        D, [], [(Op.PULL, "")], images={"busybox:1": None}
    ),
    "spec changed: recreate": Case(D, [seen(config_hash="old")], [(Op.RECREATE, "main")]),
    "image id changed: recreate": Case(
        D, [seen(config_hash=hash_of(D))], [(Op.RECREATE, "main")], images={"busybox:1": "sha256:b"}
    ),
    "crashed, restart due: start": Case(
        D, [seen(running=False, exit_code=3)], [(Op.START, "main")]
    ),
    "crashed, in backoff: wait": Case(
        D, [seen(running=False, exit_code=3, due=NOW + 5)], [(Op.WAIT, "main")]
    ),
    "crashed, backoff over: start": Case(
        D, [seen(running=False, exit_code=3, due=NOW - 1)], [(Op.START, "main")]
    ),
    "on-failure, exited 0: kept exited": Case(
        desired("on-failure"), [seen(running=False, exit_code=0, d=desired("on-failure"))],
        [(Op.KEEP_EXITED, "main")],
    ),
    "on-failure, exited 1: start": Case(
        desired("on-failure"), [seen(running=False, exit_code=1, d=desired("on-failure"))],
        [(Op.START, "main")],
    ),
    "never, exited 1: kept exited": Case(
        desired("never"), [seen(running=False, exit_code=1, d=desired("never"))],
        [(Op.KEEP_EXITED, "main")],
    ),
    "liveness failed: restart": Case(
        D, [seen()], [(Op.RESTART, "main")], liveness_failed=frozenset({"main"})
    ),
    "not desired: remove all": Case(
        None, [seen(), seen("side", d=D_SIDE)], [(Op.REMOVE, "main"), (Op.REMOVE, "side")]
    ),
    "not desired, nothing there: nothing": Case(None, [], []),
    "a container not in the spec: removed": Case(
        D, [seen(), seen("old", config_hash="x")], [(Op.REMOVE, "old"), (Op.OK, "main")]
    ),
    "a duplicate: the extra one removed": Case(
        D, [seen(cid="one"), seen(cid="two")], [(Op.REMOVE, "main"), (Op.OK, "main")]
    ),
    "owner replaced: the follower restarts with it": Case(
        D_SIDE, [seen(config_hash="old", d=D_SIDE), seen("side", d=D_SIDE)],
        [(Op.RECREATE, "main"), (Op.RESTART, "side")],
    ),
    "owner restarted after the follower: the follower restarts": Case(
        D_SIDE,
        [seen(started="2026-01-01T00:00:09Z", d=D_SIDE), seen("side", d=D_SIDE)],
        [(Op.OK, "main"), (Op.RESTART, "side")],
    ),
    "owner restarts, follower in backoff: started with it": Case(
        D_SIDE,
        [
            seen(running=False, exit_code=1, d=D_SIDE),
            seen("side", running=False, exit_code=1, due=NOW + 9, d=D_SIDE),
        ],
        [(Op.START, "main"), (Op.START, "side")],
    ),
    "follower missing: created after the owner": Case(
        D_SIDE, [seen(d=D_SIDE)], [(Op.OK, "main"), (Op.CREATE, "side")]
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_each_situation_gets_its_actions(case: Case) -> None:
    actions = plan_instance(
        case.desired, case.observed, case.images, now=NOW, liveness_failed=case.liveness_failed
    )
    assert [(a.op, a.container) for a in actions] == case.expected


def test_actions_name_the_containers_they_act_on() -> None:
    actions = plan_instance(D, [seen(config_hash="old", cid="c1")], {"busybox:1": IMAGE}, now=NOW)
    assert actions == [Action(Op.RECREATE, "main", "c1", "spec changed")]
    pull = plan_instance(D, [], {"busybox:1": None}, now=NOW)
    assert pull == [Action(Op.PULL, "", "", "busybox:1")]


SITE_CASES = {
    "desired only": ({"a.s.0": D}, [], ["ew.system.a"], {"a.s.0"}, set()),
    "leftover of an instance no longer desired gets a worker": (
        {}, ["old.s.0"], [], {"old.s.0"}, set()
    ),
    "a network nobody needs is removed": (
        {"a.s.0": D}, ["a.s.0"], [D.network, "ew.system.gone"], {"a.s.0"}, {"ew.system.gone"}
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", SITE_CASES.values(), ids=list(SITE_CASES))
def test_the_site_plan_covers_desired_and_leftovers(case: tuple[Any, ...]) -> None:
    want, observed, networks, workers, removed = case
    plan = plan_site(want, observed, networks)
    assert plan.workers == frozenset(workers)
    assert plan.remove_networks == frozenset(removed)
