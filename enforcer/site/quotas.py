"""Tenants' quotas at this site, as control last sent them; kept in the store so that an offline
restart still holds every tenant to its quota."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from enforcer.schedule.quota import Quota
from enforcer.site.store import Store

__all__ = ["SiteQuotas"]

log = logging.getLogger(__name__)
_KEY = "control-quotas"


class SiteQuotas:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.quotas: tuple[Quota, ...] = ()

    async def load(self) -> None:
        text = await self.store.get(_KEY)
        try:
            self.quotas = tuple(Quota.from_document(q) for q in json.loads(text or "[]"))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("stored tenant quotas are unreadable, not enforcing them: %s", exc)
            self.quotas = ()

    @staticmethod
    def parse(documents: Sequence[dict[str, Any]]) -> tuple[Quota, ...]:
        return tuple(Quota.from_document(q) for q in documents)

    async def replace(self, documents: Sequence[dict[str, Any]]) -> None:
        quotas = self.parse(documents)
        await self.store.set(_KEY, json.dumps(list(documents), sort_keys=True))
        self.quotas = quotas
