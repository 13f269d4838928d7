"""The leader's decision (pure): the site's instances on its live hosts, with failover held back
until a dead host must have stopped its instances (fencing).

An instance stays where it is while its host lives (`schedule` keeps running instances put). An
instance on a host that died is placed again only `grace` seconds after the leader saw the host
go: the host's lease had expired in the store then, and a host cut off from the store stops
its instances of replicated services before that (`enforcer.site.cluster.fencing`), so no
instance runs twice. Until then it stays assigned to the dead host.

An instance whose live host stopped qualifying for it (a device unplugged) moves only once
that host reports it no longer running (`busy`: what each live host's published status shows
as possibly running): the host stops it on its own, as it cannot run it any more, and the
instance never runs on two hosts at once. A host that leaves the site (`leaving`) is drained
the same way: it takes nothing, stops what it runs, and each instance moves once stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from enforcer.schedule.feasibility import label_expression, static_reason
from enforcer.schedule.hosts import HostState
from enforcer.schedule.scheduler import schedule
from enforcer.shared.labels import LabelSyntaxError
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
    busy: Mapping[str, frozenset[str]] | None = None,
    leaving: frozenset[str] = frozenset(),
) -> Placement:
    """`hosts`: the live hosts; `current`: the assignments now; `gone_at`: when (local clock)
    each host that is not live was seen to go (a host missing here counts as gone `now`);
    `busy`: per live host, the instances it reports as possibly running; `leaving`: live
    hosts that take nothing, whose instances move once each has stopped there."""
    live = {h.id for h in hosts}
    keep = {i: h for i, h in current.items() if h in live and h not in leaving}
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
    sched = schedule([h for h in hosts if h.id not in leaving], ordered, keep)
    out = dict(sched.assignments)
    held = {i: h for i, h in held.items() if i in out or i in sched.pending}  # still wanted
    out.update(held)  # it waits on its dead host
    by_id = {h.id: h for h in hosts}
    for iid, host in current.items():
        if host not in live or out.get(iid, host) == host:
            continue  # a dead host's (held above), or not moving
        stays = host in leaving or not _qualifies(by_id[host], apps, iid)
        if iid in (busy or {}).get(host, ()) and stays:
            out[iid] = host  # until its host has stopped it
            held[iid] = host
    if not held:
        recheck = None
    pending = {i: r for i, r in sched.pending.items() if i not in held}
    return Placement(dict(sorted(out.items())), pending, tuple(sorted(held)), recheck)


def _qualifies(host: HostState, apps: Mapping[str, Application], iid: str) -> bool:
    """Whether `host` could ever run instance `iid` (labels, devices, GPUs, total size)."""
    app_name, _, rest = iid.partition(".")
    service_name = rest.partition(".")[0]
    app = apps.get(app_name)
    service = next((s for s in app.services if s.name == service_name), None) if app else None
    if service is None:
        return True
    text = service.placement.match_host_labels
    expr = label_expression(text)
    if isinstance(expr, LabelSyntaxError):
        return True
    return (
        static_reason(host, host.label_map, expr, text, service.placement, service.resources)
        is None
    )
