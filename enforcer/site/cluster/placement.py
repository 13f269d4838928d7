"""The leader's decision (pure): the site's instances on its live hosts, with failover held back
until a dead host must have stopped its instances (fencing).

An instance stays where it is while its host lives (`schedule` keeps running instances put). An
instance on a host that died is placed again only `grace` seconds after the leader saw the host
go: the host's lease had expired in the store then, and a host cut off from the store stops
its instances of replicated services before that (`enforcer.site.cluster.fencing`), so no
instance runs twice. Until then it stays assigned to the dead host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from enforcer.schedule.hosts import HostState
from enforcer.schedule.scheduler import schedule
from enforcer.shared.spec.model import Application

__all__ = ["Placement", "place"]


@dataclass(frozen=True)
class Placement:
    instances: dict[str, str]  # instance id -> host id, sorted
    pending: dict[str, tuple[str, ...]]  # instances no live host can take, with the reasons
    held: tuple[str, ...]  # instances of dead hosts still waiting for the fencing moment
    recheck_at: float | None  # when to decide again (a held instance's moment), if any


def place(
    hosts: Sequence[HostState],
    apps: Mapping[str, Application],
    current: Mapping[str, str],
    gone_at: Mapping[str, float],
    now: float,
    grace: float,
) -> Placement:
    """`hosts`: the live hosts; `current`: the assignments now; `gone_at`: when (local clock)
    each host that is not live was seen to go (a host missing here counts as gone `now`)."""
    live = {h.id for h in hosts}
    keep = {i: h for i, h in current.items() if h in live}
    held: dict[str, str] = {}
    recheck: float | None = None
    for iid, host in current.items():
        if host in live:
            continue
        free_at = gone_at.get(host, now) + grace
        if now < free_at:
            held[iid] = host
            recheck = free_at if recheck is None else min(recheck, free_at)
    ordered = sorted(apps.values(), key=lambda a: a.name)
    sched = schedule(list(hosts), ordered, keep)
    out = dict(sched.assignments)
    held = {i: h for i, h in held.items() if i in out or i in sched.pending}  # still wanted
    out.update(held)  # it waits on its dead host
    if not held:
        recheck = None
    pending = {i: r for i, r in sched.pending.items() if i not in held}
    return Placement(dict(sorted(out.items())), pending, tuple(sorted(held)), recheck)
