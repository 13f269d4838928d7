"""What control sends the site besides its applications, shared by every host through the
site store (DESIGN.md, "Site, hosts and the scheduler").

Only the leader syncs with control, but an instance may run on any host, and a new leader must
not need control to have what the last one received. So the leader puts the site's vaults and
its tenants' quotas into the store as control sent them, and every host (the leader too)
applies what it finds there:

/site/vaults    {"unseal": "local"|"remote", "vaults": [...]}: the vault entries of control's
                desired state, each still *sealed* for the site's key (only a host holding the
                site identity opens them; the store never holds a secret in clear)
/site/quotas    [...]: the tenants' quota documents

A host applies a record once per value. Vaults wait until the host holds the site's key (its
copy of the site identity, `enforcer.link.leader`): `follow` is called again when it arrives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from enforcer.secrets.vaults import SiteVaults
from enforcer.site.cluster import records as keys
from enforcer.site.kv.base import KVError, SiteKV
from enforcer.site.quotas import SiteQuotas

__all__ = ["SharedRecords"]

log = logging.getLogger(__name__)


def _body(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class SharedRecords:
    def __init__(self, kv: SiteKV, vaults: SiteVaults, quotas: SiteQuotas) -> None:
        self.kv = kv
        self.vaults = vaults
        self.quotas = quotas
        self.applied: dict[str, bytes] = {}  # key -> the value this host applied last
        self.unpublished: dict[str, bytes] = {}  # what the store failed to take
        self.published: dict[str, int] = {}  # key -> the revision this host last wrote
        self.opened_with: tuple[str, int] | None = None  # (site, key file's mtime); None: any

    async def publish_vaults(self, vaults: Sequence[Mapping[str, Any]], unseal: str) -> None:
        """The leader: control's vaults (sealed as control sent them) for every host."""
        await self._publish(keys.VAULTS, _body({"unseal": unseal, "vaults": list(vaults)}))

    async def publish_quotas(self, quotas: Sequence[Mapping[str, Any]]) -> None:
        """The leader: control's tenant quotas for every host."""
        await self._publish(keys.QUOTAS, _body(list(quotas)))

    async def _publish(self, key: str, body: bytes) -> None:
        """Into the store (again at the next `follow` when the store fails now); the leader
        applies them itself at once."""
        self.applied[key] = body
        self.unpublished[key] = body
        if key == keys.VAULTS:
            self.opened_with = None  # the leader opens them itself, as control sent them
        try:
            self.published[key] = await self.kv.put(key, body)
        except KVError as exc:
            log.warning("%s not handed to the site's other hosts yet: %s", key, exc)
        else:
            self.unpublished.pop(key, None)

    async def follow(self, records: Mapping[str, tuple[bytes, int]], site: str) -> bool:
        """Apply what changed in `records` (the shared keys as this host last read them, with
        their revisions; older than what it wrote itself: not yet seen, skipped); whether the
        quotas or any vault's contents changed."""
        for key, body in list(self.unpublished.items()):
            await self._publish(key, body)
        seen = {k: v for k, (v, rev) in records.items() if rev >= self.published.get(k, 0)}
        changed = False
        quotas = seen.get(keys.QUOTAS)
        if quotas is not None and quotas != self.applied.get(keys.QUOTAS):
            self.applied[keys.QUOTAS] = quotas
            try:
                documents = json.loads(quotas)
                if SiteQuotas.parse(documents) != self.quotas.quotas:
                    await self.quotas.replace(documents)
                    changed = True
            except (ValueError, KeyError, TypeError) as exc:
                log.error("site store: %s is not a list of quotas: %s", keys.QUOTAS, exc)
        vaults = seen.get(keys.VAULTS)
        try:  # the site's key they open with: a new one (the site's identity came) opens again
            stamp: tuple[str, int] | None = (site, self.vaults.site_key_path.stat().st_mtime_ns)
        except OSError:
            return changed  # applied once this host holds the site's identity
        same = vaults == self.applied.get(keys.VAULTS) and self.opened_with in (None, stamp)
        if vaults is None or same:
            return changed
        self.applied[keys.VAULTS], self.opened_with = vaults, stamp
        try:
            doc = json.loads(vaults)
            entries, unseal = list(doc["vaults"]), str(doc["unseal"])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("site store: %s is not a vaults record: %s", keys.VAULTS, exc)
            return changed
        return await self.vaults.apply(entries, unseal, site=site) or changed
