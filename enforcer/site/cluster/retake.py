"""A host takes its registration back: after its enforcer restarted, and after the site store's
quorum came back (`enforcer.site.cluster.coordinator`). Its old key is revoked only when it is
the host's own, and the host registers again at once, so that the site never sees it go."""

from __future__ import annotations

import logging

from enforcer.site.kv.base import SiteKV
from enforcer.site.kv.registry import HostRecord, InvalidHostRecord, Registration

__all__ = ["revoke_if_ours", "take_back"]

log = logging.getLogger(__name__)


async def take_back(kv: SiteKV, registration: Registration) -> bool:
    """This host restarted: its previous run's registration (same id, same address) is still
    there. Revoke it; whether this host may register now. A twin elsewhere has another address
    and is refused as before. Raises KVError."""
    entry = await kv.get(registration.key)
    if entry is None or not entry.lease:
        return entry is None
    try:
        previous = HostRecord.from_json(entry.value)
    except InvalidHostRecord:
        return False
    if previous.address != registration.record.address:
        return False
    log.info("host %s takes back its registration from a previous run", registration.record.id)
    await kv.revoke(entry.lease)
    return True


async def revoke_if_ours(kv: SiteKV, registration: Registration, lease: int) -> None:
    """The quorum is back and this host's lease outlived the loss: revoke it (only if its key
    is still under it), so that the registration made again takes the key at once."""
    entry = await kv.get(registration.key)
    if entry is not None and entry.lease == lease:
        await kv.revoke(lease)
