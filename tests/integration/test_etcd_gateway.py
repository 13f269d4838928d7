"""The etcd gateway client against a real etcd 3.4 member (Debian's etcd-server) over TLS."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from enforcer.shared.pki import client_ssl_context
from enforcer.site.etcd.certs import TLSFiles, create_site_ca
from enforcer.site.etcd.errors import AuthFailed, Compacted, LeaseExpired, Unreachable
from enforcer.site.etcd.gateway import Compare, Delete, EtcdGateway, Get, Put
from enforcer.site.etcd.records import EventKind
from tests.support.ci import running
from tests.support.etcd import EtcdMember, member_config
from tests.support.processes import free_port


class Solo:
    def __init__(self, member: EtcdMember, client: TLSFiles) -> None:
        self.member = member
        self.client = client

    def gateway(self, timeout: float = 3.0) -> EtcdGateway:
        return EtcdGateway(
            [self.member.config.client_url],
            ssl_context=self.client.client_context(),
            timeout=timeout,
        )

    def run(self, scenario: Callable[[EtcdGateway], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            async with self.gateway() as etcd:
                return await scenario(etcd)

        return asyncio.run(main())


@pytest.fixture(scope="module")
def solo() -> Iterator[Solo]:
    root = Path(tempfile.mkdtemp(prefix="etcd-", dir="/tmp"))
    ca = create_site_ca("gateway-test")
    member = EtcdMember(member_config(root, ca, "solo", "127.0.0.11"))
    with running(member):
        yield Solo(member, ca.write_pair(root / "client", "client", "enforcer"))
    shutil.rmtree(root, ignore_errors=True)


def test_create_if_absent_succeeds_once_and_reports_the_existing_key(solo: Solo) -> None:
    async def scenario(etcd: EtcdGateway) -> None:
        first = await etcd.create("cas/a", b"one")
        second = await etcd.create("cas/a", b"two")
        assert first.succeeded and first.current is None
        assert not second.succeeded
        assert second.current is not None and second.current.value == b"one"
        assert second.current.create_revision == first.revision
        kv = await etcd.get("cas/a")
        assert kv is not None and kv.value == b"one" and kv.version == 1

    solo.run(scenario)


def test_update_succeeds_only_at_the_revision_last_read(solo: Solo) -> None:
    async def scenario(etcd: EtcdGateway) -> None:
        await etcd.put("cas/b", b"v1")
        read = await etcd.get("cas/b")
        assert read is not None
        won = await etcd.update("cas/b", b"v2", read.mod_revision)
        lost = await etcd.update("cas/b", b"v3", read.mod_revision)
        assert won.succeeded and not lost.succeeded
        assert lost.current is not None and lost.current.value == b"v2"
        assert lost.current.mod_revision == won.revision
        assert not (await etcd.delete_if("cas/b", read.mod_revision)).succeeded
        assert (await etcd.delete_if("cas/b", won.revision)).succeeded
        assert await etcd.get("cas/b") is None

    solo.run(scenario)


def test_a_transaction_writes_several_keys_or_none(solo: Solo) -> None:
    async def scenario(etcd: EtcdGateway) -> None:
        ok = await etcd.txn(
            [Compare("tx/lock", "create", 0)],
            [Put("tx/lock", b"me"), Put("tx/data", b"d"), Get("tx/", prefix=True)],
        )
        assert ok.succeeded
        assert [kv.key for kv in ok.reads[0]] == ["tx/data", "tx/lock"]
        again = await etcd.txn(
            [Compare("tx/lock", "create", 0)], [Delete("tx/", prefix=True)], [Get("tx/lock")]
        )
        assert not again.succeeded and again.current is not None
        assert len((await etcd.range("tx/", prefix=True)).kvs) == 2

    solo.run(scenario)


def test_range_and_delete_by_prefix_with_binary_values_and_unicode_keys(solo: Solo) -> None:
    async def scenario(etcd: EtcdGateway) -> None:
        await etcd.put("pre/x/1", b"\x00\xff")
        await etcd.put("pre/x/2-ü", b"")
        await etcd.put("pre/y", b"other")
        found = await etcd.range("pre/x/", prefix=True)
        assert [(kv.key, kv.value) for kv in found.kvs] == [
            ("pre/x/1", b"\x00\xff"),
            ("pre/x/2-ü", b""),
        ]
        assert found.revision >= max(kv.mod_revision for kv in found.kvs)
        assert await etcd.delete("pre/x/", prefix=True) == 2
        assert [kv.key for kv in (await etcd.range("pre/", prefix=True)).kvs] == ["pre/y"]
        assert "pre/y" in [kv.key for kv in (await etcd.range("", prefix=True)).kvs]

    solo.run(scenario)


def test_keys_under_a_lease_vanish_when_it_expires_and_stay_while_kept_alive(
    solo: Solo,
) -> None:
    async def scenario(etcd: EtcdGateway) -> None:
        kept = await etcd.lease_grant(2)
        dropped = await etcd.lease_grant(2)
        assert kept.id != dropped.id and kept.ttl == 2
        await etcd.put("lease/kept", b"k", lease=kept.id)
        await etcd.put("lease/dropped", b"d", lease=dropped.id)
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            assert await etcd.lease_keepalive(kept.id) == 2
            await asyncio.sleep(0.5)
        kv = await etcd.get("lease/kept")
        assert kv is not None and kv.lease == kept.id
        assert await etcd.get("lease/dropped") is None
        with pytest.raises(LeaseExpired):
            await etcd.lease_keepalive(dropped.id)
        with pytest.raises(LeaseExpired):
            await etcd.put("lease/again", b"d", lease=dropped.id)
        with pytest.raises(LeaseExpired):
            await etcd.create("lease/again", b"d", lease=dropped.id)
        assert await etcd.lease_revoke(kept.id)
        assert await etcd.get("lease/kept") is None
        assert not await etcd.lease_revoke(kept.id)

    solo.run(scenario)


def test_watch_sees_puts_and_deletes_in_order(solo: Solo) -> None:
    async def scenario(etcd: EtcdGateway) -> None:
        start = await etcd.put("w/seed", b"0")
        async with etcd.watch("w/", prefix=True, start_revision=start + 1, prev_kv=True) as watch:
            await etcd.put("w/a", b"1")
            await etcd.put("w/a", b"2")
            await etcd.delete("w/a")
            await etcd.put("other", b"not watched")
            await etcd.put("w/b", b"3")
            seen: list[tuple[EventKind, str, bytes]] = []
            while len(seen) < 4:
                events = await asyncio.wait_for(watch.__anext__(), 5)
                seen += [(e.kind, e.kv.key, e.kv.value) for e in events]
        assert seen == [
            (EventKind.PUT, "w/a", b"1"),
            (EventKind.PUT, "w/a", b"2"),
            (EventKind.DELETE, "w/a", b""),
            (EventKind.PUT, "w/b", b"3"),
        ]
        last = await etcd.get("w/b")
        assert last is not None and watch.next_revision == last.mod_revision + 1

    solo.run(scenario)


def test_watch_from_a_compacted_revision_raises_compacted_and_relist_rewatch_recovers(
    solo: Solo,
) -> None:
    async def scenario(etcd: EtcdGateway) -> None:
        old = await etcd.put("c/a", b"1")
        await etcd.put("c/a", b"2")
        now = await etcd.put("c/b", b"3")
        await etcd.compact(now)
        with pytest.raises(Compacted) as caught:
            async with etcd.watch("c/", prefix=True, start_revision=old) as stale:
                await asyncio.wait_for(stale.__anext__(), 5)
        assert caught.value.compact_revision == now
        assert "compacted" in str(caught.value) and solo.member.config.client_url in str(
            caught.value
        )
        with pytest.raises(Compacted):
            await etcd.range("c/", prefix=True, revision=old)
        listed = await etcd.range("c/", prefix=True)
        assert {kv.key: kv.value for kv in listed.kvs} == {"c/a": b"2", "c/b": b"3"}
        async with etcd.watch("c/", prefix=True, start_revision=listed.revision + 1) as watch:
            await etcd.put("c/a", b"4")
            events = await asyncio.wait_for(watch.__anext__(), 5)
        assert [(e.kv.key, e.kv.value) for e in events] == [("c/a", b"4")]

    solo.run(scenario)


def test_a_client_without_a_site_certificate_is_refused_with_an_auth_error(solo: Solo) -> None:
    url = solo.member.config.client_url
    stranger = create_site_ca("stranger").write_pair(
        solo.member.config.data_dir.parent.parent / "stranger", "client", "stranger"
    )

    async def scenario() -> None:
        no_cert = EtcdGateway([url], ssl_context=client_ssl_context(solo.client.ca.read_bytes()))
        other_ca = EtcdGateway([url], ssl_context=stranger.client_context())
        for gateway in (no_cert, other_ca):
            async with gateway:
                with pytest.raises(AuthFailed) as caught:
                    await gateway.get("anything")
                assert url in str(caught.value) and "TLS" in str(caught.value)

    asyncio.run(scenario())


def test_an_endpoint_that_refuses_is_skipped_and_all_refusing_is_unreachable(
    solo: Solo,
) -> None:
    dead = f"https://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        context = solo.client.client_context()
        both = EtcdGateway([dead, solo.member.config.client_url], ssl_context=context)
        async with both:
            await both.put("failover/k", b"v")
            assert (await both.get("failover/k")) is not None
        only_dead = EtcdGateway([dead], ssl_context=context, timeout=2)
        async with only_dead:
            started = time.monotonic()
            with pytest.raises(Unreachable) as caught:
                await only_dead.get("k")
            assert time.monotonic() - started < 2
        assert dead in str(caught.value) and "no member accepted a connection" in str(caught.value)

    asyncio.run(scenario())
