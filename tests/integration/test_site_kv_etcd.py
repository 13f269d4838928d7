"""The site store's contract, election and registration on a real etcd (Debian's etcd-server).

The same tests as for the SQLite engine (tests/unit/test_site_kv.py, test_site_kv_election.py),
imported here with `engine` overridden: one etcd process on loopback for this module, emptied
before each test. Time passes for real: leases here have etcd's smallest TTL, 2 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence

import pytest

from enforcer.site.etcd.gateway import EtcdGateway
from enforcer.site.kv.base import SiteKV, Unavailable
from enforcer.site.kv.election import Election, current_leader
from enforcer.site.kv.etcd import EtcdKV
from enforcer.site.kv.lease import KeptLease
from tests.support.ci import running
from tests.support.etcd import EtcdProcess
from tests.support.processes import free_port
from tests.unit.test_site_kv import (
    Body,
    test_a_healthy_store_says_so_with_its_revision,
    test_a_key_deleted_and_put_again_is_created_anew,
    test_a_put_key_reads_back_with_its_revisions,
    test_a_watch_from_a_compacted_revision_raises_compacted,
    test_bad_keys_ttls_and_revisions_are_refused_with_a_clear_message,
    test_create_writes_only_a_key_that_is_absent,
    test_delete_removes_a_key_or_a_prefix_and_counts_them,
    test_every_change_takes_the_next_store_wide_revision,
    test_keep_alive_holds_a_lease_past_its_ttl,
    test_keys_of_a_lease_vanish_when_it_expires,
    test_range_lists_only_the_prefix_sorted_by_key,
    test_replace_writes_only_over_the_revision_the_caller_read,
    test_revoking_a_lease_deletes_its_keys_at_once,
    test_watch_replays_changes_from_a_past_revision_then_follows_new_ones,
)
from tests.unit.test_site_kv_election import (
    test_a_changed_record_is_published_under_the_same_lease,
    test_a_host_whose_lease_was_lost_registers_again,
    test_a_leader_whose_lease_is_gone_knows_it_lost_and_may_stand_again,
    test_a_registered_host_is_listed_with_its_record,
    test_a_registration_disappears_when_its_lease_expires,
    test_a_resigning_leader_hands_over_to_the_next_in_line,
    test_a_second_live_host_with_the_same_id_is_refused,
    test_a_waiting_candidate_whose_lease_is_lost_stops_waiting,
    test_observers_see_every_new_leader_and_the_gap_between,
    test_the_first_candidate_leads_and_the_others_wait,
    test_when_the_leader_dies_the_next_candidate_leads_once_its_lease_expires,
)

__all__ = [  # the imported tests run here again, on etcd
    "test_a_changed_record_is_published_under_the_same_lease",
    "test_a_healthy_store_says_so_with_its_revision",
    "test_a_host_whose_lease_was_lost_registers_again",
    "test_a_key_deleted_and_put_again_is_created_anew",
    "test_a_leader_whose_lease_is_gone_knows_it_lost_and_may_stand_again",
    "test_a_put_key_reads_back_with_its_revisions",
    "test_a_registered_host_is_listed_with_its_record",
    "test_a_registration_disappears_when_its_lease_expires",
    "test_a_resigning_leader_hands_over_to_the_next_in_line",
    "test_a_second_live_host_with_the_same_id_is_refused",
    "test_a_waiting_candidate_whose_lease_is_lost_stops_waiting",
    "test_a_watch_from_a_compacted_revision_raises_compacted",
    "test_bad_keys_ttls_and_revisions_are_refused_with_a_clear_message",
    "test_create_writes_only_a_key_that_is_absent",
    "test_delete_removes_a_key_or_a_prefix_and_counts_them",
    "test_every_change_takes_the_next_store_wide_revision",
    "test_keep_alive_holds_a_lease_past_its_ttl",
    "test_keys_of_a_lease_vanish_when_it_expires",
    "test_observers_see_every_new_leader_and_the_gap_between",
    "test_range_lists_only_the_prefix_sorted_by_key",
    "test_replace_writes_only_over_the_revision_the_caller_read",
    "test_revoking_a_lease_deletes_its_keys_at_once",
    "test_the_first_candidate_leads_and_the_others_wait",
    "test_watch_replays_changes_from_a_past_revision_then_follows_new_ones",
    "test_when_the_leader_dies_the_next_candidate_leads_once_its_lease_expires",
]


class EtcdEngine:
    name = "etcd"
    ttl = 2.0  # etcd's smallest lease TTL with its default election timeout

    def __init__(self, process: EtcdProcess) -> None:
        self.process = process

    def run(self, body: Body) -> None:
        async def main() -> None:
            kv = EtcdKV(EtcdGateway([self.process.client_url]))
            try:
                await kv.delete("", prefix=True)  # each test starts with an empty store
                await asyncio.wait_for(body(kv), timeout=60)
            finally:
                await kv.close()

        asyncio.run(main())

    async def pass_time(self, kv: SiteKV, seconds: float, keep: Sequence[KeptLease] = ()) -> None:
        # the keepers renew `keep` on their own; etcd checks for expired leases every 0.5 s
        await asyncio.sleep(seconds + 0.3)


@pytest.fixture(scope="module")
def etcd_process() -> Iterator[EtcdProcess]:
    with running(EtcdProcess()) as process:
        yield process


@pytest.fixture
def engine(etcd_process: EtcdProcess) -> EtcdEngine:
    return EtcdEngine(etcd_process)


def test_a_store_that_cannot_be_reached_is_unhealthy_and_unavailable() -> None:
    async def main() -> None:
        kv = EtcdKV(EtcdGateway([f"http://127.0.0.1:{free_port()}"], timeout=1))
        health = await kv.health()
        assert not health.ok and "127.0.0.1" in health.detail
        with pytest.raises(Unavailable, match="no member accepted a connection"):
            await kv.get("/a")
        await kv.close()

    asyncio.run(main())


def test_three_hosts_elect_one_leader_and_replace_it_within_its_ttl_when_it_dies(
    etcd_process: EtcdProcess,
) -> None:
    """Each host with its own client; the leader dies (stops renewing, drops its connection)."""

    async def main() -> None:
        clients = [EtcdKV(EtcdGateway([etcd_process.client_url])) for _ in range(3)]
        await clients[0].delete("/site/", prefix=True)
        hosts = [Election(kv, f"host-{n}", ttl=EtcdEngine.ttl) for n, kv in enumerate(clients)]
        campaigns = [asyncio.create_task(e.campaign()) for e in hosts]
        done, waiting = await asyncio.wait(
            campaigns, timeout=10, return_when=asyncio.FIRST_COMPLETED
        )
        (first,) = done
        leader = hosts[campaigns.index(first)]
        assert (await current_leader(clients[2])) == first.result()
        await asyncio.sleep(0.5)
        assert [c.done() for c in campaigns].count(True) == 1  # one leader at a time

        await leader.lease.stop(revoke=False)  # the leader's host dies
        await clients[hosts.index(leader)].close()
        died = time.monotonic()
        done, waiting = await asyncio.wait(waiting, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        took = time.monotonic() - died
        (second,) = done
        assert second.result().candidate != leader.candidate
        assert took < EtcdEngine.ttl + 1.0, f"a new leader after {took:.2f}s"
        for task in waiting:
            task.cancel()
        for election, kv in zip(hosts, clients, strict=True):
            if election is not leader:
                await election.resign()
                await kv.close()

    asyncio.run(main())
