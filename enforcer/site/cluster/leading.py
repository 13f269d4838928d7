"""The leader's part of a multi-host site (`enforcer.site.cluster.coordinator`): stand for
leadership and, while this host leads, place the site's instances on its live hosts
(`enforcer.site.cluster.placement`) and write the assignments.

A leader decides only once it has read the site's hosts and applications, itself among them
(an empty view would place nothing, and the hosts would stop what they run), and writes only
over the assignments it decided on (compare-and-swap on their revision: no stale view wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from enforcer.site.cluster.placement import place
from enforcer.site.cluster.records import ASSIGNMENTS, Assignments, parsed_apps
from enforcer.site.kv.base import KVError

if TYPE_CHECKING:
    from enforcer.site.cluster.coordinator import Coordinator

__all__ = ["lead"]

log = logging.getLogger(__name__)


async def lead(c: Coordinator) -> None:
    """Stand for leadership, decide while leading, stand again; until cancelled."""
    while True:
        try:
            await c.election.campaign()
        except KVError as exc:
            log.warning("host %s cannot stand for leadership: %s", c.host, exc)
            await asyncio.sleep(c.ttl / 3)
            continue
        c.set_leading(True)
        log.info("host %s leads the site", c.host)
        try:
            await _decide_while_leading(c)
        except KVError as exc:
            log.warning("leader %s: the site store failed: %s", c.host, exc)
            await asyncio.sleep(c.ttl / 3)
        finally:
            c.set_leading(False)
        if not c.election.lost.is_set():  # stepped down after a store error
            with contextlib.suppress(KVError):
                await c.election.resign()


async def _decide_while_leading(c: Coordinator) -> None:
    while c.election.is_leader:
        c.leader_dirty.clear()
        if c.host not in c.hosts:  # its view of the site is not read yet
            await _wait(c, None)
            continue
        hosts = [h.host_state() for _, h in sorted(c.hosts.items())]
        current = c.assignments.instances if c.assignments else {}
        leaving = frozenset(h for h, r in c.hosts.items() if r.leaving)
        decided = place(
            hosts, parsed_apps(c.apps), current, c.gone_at, c.clock(), c.grace,
            c.status.busy(), leaving,
        )  # fmt: skip
        old = c.assignments or Assignments()
        if decided.instances != dict(old.instances) or old.leader != c.host:
            if not c.election.is_leader:
                return
            body = Assignments(c.host, decided.instances).to_json()
            if c.assignments_revision:  # only over what it decided on: no stale view
                written = await c.kv.replace(ASSIGNMENTS, body, c.assignments_revision)
            else:
                written = await c.kv.create(ASSIGNMENTS, body)
            if written is None:
                log.info("leader %s: the assignments changed meanwhile", c.host)
                # its view may be stale for good (a read raced the watch): read it, decide anew
                c._set_assignments(await c.kv.get(ASSIGNMENTS))
                continue
            else:
                log.info("leader %s: %d instances placed", c.host, len(decided.instances))
        await _wait(c, decided.recheck_at)


async def _wait(c: Coordinator, until: float | None) -> None:
    """Until the site changes, leadership is lost, or the clock reaches `until`."""
    wait = None if until is None else max(0.05, until - c.clock())
    changed = asyncio.create_task(c.leader_dirty.wait())
    lost = asyncio.create_task(c.election.lost.wait())
    try:
        await asyncio.wait({changed, lost}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    finally:
        changed.cancel()
        lost.cancel()
