"""Telling a site store that lost its quorum from a host cut off from its store.

Both look the same from the host: its lease cannot be renewed. They call for opposite acts. A
host cut off from a store that the other hosts still reach must stop its instances of
replicated services before its lease must have expired, since the leader will start them
elsewhere (fencing). With the quorum lost nobody can renew a lease, elect a leader or write
assignments, so nothing can move: every host keeps running what it runs, and stopping would
only take the site down.

The host asks every member of the store, briefly, how it stands. A member that answers and
follows no leader cannot be part of a working quorum; neither can one whose address refuses
the connection (nothing listens: the member is not running). When such members are a majority
of the store, no quorum can exist anywhere: any majority would share a member with them. The
quorum is lost, and the host changes nothing. Anything else (a member that follows a leader, or
too many members that do not answer at all, as when this host is cut off) may leave a quorum
that the others reach, and the host fences as before: when in doubt, replicated services stop.
A member on a host cut off by a firewall that rejects (rather than drops) counts as not
running; that is the one case this reading cannot tell apart.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from enforcer.site.kv.base import SiteKV

__all__ = ["MemberStates", "QuorumProbe", "QuorumWatch"]

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 0.5
PROBE_INTERVAL = 0.5  # seconds between probes while the store does not answer


@dataclass(frozen=True)
class MemberStates:
    """How the store's members answered one probe."""

    members: int
    following: int = 0  # answered, following a leader
    leaderless: int = 0  # answered, following none
    down: int = 0  # refused the connection
    silent: int = 0  # no answer in time

    @property
    def quorum_lost(self) -> bool:
        """No quorum can exist: a majority of the members cannot be part of one."""
        return self.following == 0 and self.leaderless + self.down > self.members // 2


class QuorumProbe:
    """Asks each member of an etcd site store how it stands (`MemberStates`)."""

    def __init__(self, endpoints: list[str], session: object) -> None:
        self.endpoints = endpoints
        self._session = session  # makes a fresh aiohttp session with the store's TLS

    @classmethod
    def of(cls, kv: SiteKV) -> QuorumProbe | None:
        """The probe of an etcd store; None for one that has no quorum to lose (SQLite)."""
        gateway = getattr(kv, "gateway", None)
        if gateway is None or not hasattr(gateway, "session"):
            return None
        return cls(list(gateway.endpoints), gateway.session)

    async def _one(self, endpoint: str) -> str:
        make = self._session
        assert callable(make)
        try:
            session: aiohttp.ClientSession = make()
            async with (
                session,
                session.post(
                    endpoint + "/v3/maintenance/status",
                    json={},
                    timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT),
                ) as response,
            ):
                body = json.loads(await response.read())
        except aiohttp.ClientConnectorError as exc:
            refused = exc.os_error.errno == errno.ECONNREFUSED
            return "down" if refused and not isinstance(exc, aiohttp.ClientSSLError) else "silent"
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return "silent"
        leader = body.get("leader") if isinstance(body, dict) else None
        return "following" if leader not in (None, 0, "0", "") else "leaderless"

    async def states(self) -> MemberStates:
        found = await asyncio.gather(*(self._one(e) for e in self.endpoints))
        return MemberStates(
            members=len(found),
            following=found.count("following"),
            leaderless=found.count("leaderless"),
            down=found.count("down"),
            silent=found.count("silent"),
        )


class QuorumWatch:
    """A host's reading of its store while its lease cannot be renewed: whether the quorum is
    lost (since when), and for how long after it came back things are held as they are."""

    def __init__(
        self, probe: QuorumProbe | None, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.probe = probe
        self.ttl = ttl
        self.clock = clock
        self.lost_since: float | None = None  # wall time the quorum was found lost
        self.back_at: float | None = None  # local time it was found back
        self.hold_until = 0.0  # local time: change nothing before it
        self._checked = float("-inf")
        self._lost = False

    async def lost(self) -> bool:
        """Whether the quorum is lost now (probed at most every PROBE_INTERVAL)."""
        if self.probe is None:
            return False
        now = self.clock()
        if now - self._checked >= PROBE_INTERVAL:
            self._checked = now
            states = await self.probe.states()
            self._lost = states.quorum_lost
            if self._lost and self.lost_since is None:
                log.warning("site store: quorum lost (%s): every instance runs on as it is", states)
                self.lost_since = time.time()
            elif not self._lost and self.lost_since is not None:
                self.back()
        if self._lost:
            self.hold_until = now + self.ttl
        return self._lost

    def back(self) -> None:
        """The store answers again."""
        if self.lost_since is not None:
            log.info("site store: quorum is back")
            self.lost_since = None
            self.back_at = self.clock()
        self._lost = False

    def holding(self) -> bool:
        """Just back from a lost quorum: the host's registration is being taken back."""
        return self.clock() < self.hold_until

    def recently_back(self) -> bool:
        """Within two TTLs of the quorum's return: hosts re-register, none is given up yet."""
        return self.back_at is not None and self.clock() < self.back_at + 2 * self.ttl

    def describe(self) -> str | None:
        if self.lost_since is None:
            return None
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.lost_since))
        return f"quorum lost since {since}"
