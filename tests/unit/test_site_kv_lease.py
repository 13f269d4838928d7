"""A kept lease knows when it is lost: the store says it is gone, or the store could not be
reached for a whole TTL (then it must have expired there: what fencing waits for)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from enforcer.site.kv.base import Unavailable
from enforcer.site.kv.lease import KeptLease
from enforcer.site.kv.sqlite import SqliteKV
from tests.unit.test_site_kv import FakeClock


class CutOff(SqliteKV):
    """The SQLite engine, with keep-alives that fail (or hang) while `cut` is set."""

    cut = False
    hang = False

    async def keep_alive(self, lease: int) -> float:
        if self.hang:
            await asyncio.sleep(3600)
        if self.cut:
            raise Unavailable("the site store cannot be reached (test)")
        return await super().keep_alive(lease)


def test_a_lease_cut_off_for_a_whole_ttl_must_have_expired(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        kv = await CutOff.open(tmp_path / "kv.db", clock=clock, expiry_interval=0)
        assert isinstance(kv, CutOff)
        kept = KeptLease(kv, 3.0, interval=3600, clock=clock)
        await kept.start()
        assert kept.must_have_expired_at == clock.now + 3.0
        clock.now += 1
        await kept.renew()
        assert kept.must_have_expired_at == clock.now + 3.0
        kv.cut = True
        clock.now += 2
        await kept.renew()
        assert not kept.lost.is_set()  # a failed renewal, but the lease may still live
        clock.now += 1
        await kept.renew()
        assert kept.lost.is_set()
        await kept.stop()
        await kv.close()

    asyncio.run(main())


def test_a_renewal_that_hangs_past_the_ttl_gives_the_lease_up(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await CutOff.open(tmp_path / "kv.db", expiry_interval=0)
        assert isinstance(kv, CutOff)
        kept = KeptLease(kv, 0.3, interval=0.1)
        await kept.start()
        kv.hang = True
        await asyncio.wait_for(kept.lost.wait(), timeout=2)
        await kept.stop()
        await kv.close()

    asyncio.run(main())


def test_a_lease_the_store_ended_is_lost_at_the_next_renewal(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "kv.db", expiry_interval=0)
        kept = KeptLease(kv, 3.0, interval=0.05)
        lease = await kept.start()
        await kv.revoke(lease.id)
        await asyncio.wait_for(kept.lost.wait(), timeout=2)
        await kept.stop()
        await kv.close()

    asyncio.run(main())


def test_a_lease_is_not_known_before_it_is_granted(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await SqliteKV.open(tmp_path / "kv.db", expiry_interval=0)
        with pytest.raises(RuntimeError, match="not been granted"):
            _ = KeptLease(kv, 1.0, name="host a").id
        await kv.close()

    asyncio.run(main())
