"""`edge-enforcer site leave`: a host leaves its multi-host site cleanly (DESIGN.md, "Site,
hosts and the scheduler").

1. Refused, changing nothing, when the site's store would suffer: the site's last controller,
   or a controller whose member's removal would leave the store without a quorum of members
   that answer (`joining.leave_refusal`).
2. The host is marked leaving (its record in the store): it runs nothing more, and the leader
   moves each of its instances to another host once it has stopped here (placement's drain),
   so none runs twice. Not done within `LEAVE_WAIT`: the mark is taken back, the host stays.
3. It stops leading, its registration, status and copy of the site identity go from the store,
   a controller's etcd member is removed from the cluster and stopped, and its part of the site
   on disk goes. The daemon goes on as a one-host site with nothing to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from enforcer.site.cluster.bootstrap import SiteStore, SiteStoreError
from enforcer.site.cluster.coordinator import Coordinator
from enforcer.site.cluster.identity import HOSTKEYS, IDENTITY
from enforcer.site.cluster.joining import leave_refusal
from enforcer.site.kv.base import KVError

__all__ = ["LEAVE_WAIT", "leave_site"]

log = logging.getLogger(__name__)

LEAVE_WAIT = 60.0  # seconds for the host's instances to move off it


async def leave_site(
    cluster: Coordinator,
    store: SiteStore,
    stopped: Callable[[], bool],
    drained: Callable[[], Awaitable[None]],
    *,
    wait: float = LEAVE_WAIT,
) -> dict[str, Any]:
    """Leave the site (see the module documentation); `stopped`: whether this host's engine
    runs none of the site's instances any more; `drained`: called once they moved, before
    the host goes (its control link stops). SiteStoreError (KVError) saying why not."""
    site, host = store.site, cluster.host
    role = cluster.registration.record.role
    try:
        members = await store.voting_members()
    except Exception as exc:
        raise SiteStoreError(f"cannot leave the site: its store does not answer: {exc}") from None
    reason = leave_refusal(host, role, members, set(cluster.hosts))
    if reason is not None:
        raise SiteStoreError(f"cannot leave the site: {reason}")
    cluster.set_leaving(True)
    log.info("host %s leaves site %s: its instances move first", host, site)
    deadline = time.monotonic() + wait
    while not (stopped() and not _assigned(cluster)):
        if time.monotonic() > deadline:
            cluster.set_leaving(False)
            still = ", ".join(sorted(_assigned(cluster))) or "its own engine's"
            raise SiteStoreError(
                f"cannot leave the site: instances did not move off host {host} within "
                f"{wait:g}s ({still}); the host stays in the site"
            )
        await asyncio.sleep(0.2)
    await drained()
    for key in (IDENTITY + host, HOSTKEYS + host):
        with contextlib.suppress(KVError):
            await cluster.kv.delete(key)
    await cluster.stop(leave=True)
    await store.leave()
    log.info("host %s left site %s", host, site)
    return {"site": site, "host": host, "role": role}


def _assigned(cluster: Coordinator) -> frozenset[str]:
    return cluster.assignments.on_host(cluster.host) if cluster.assignments else frozenset()
