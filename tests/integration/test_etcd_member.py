"""The managed etcd member and etcd clusters on loopback addresses, with real etcd processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from enforcer.site.etcd.certs import SiteCA, create_site_ca
from enforcer.site.etcd.errors import EtcdError, Unavailable
from enforcer.site.etcd.member import Backoff, ManagedMember, MemberConflict, add_member
from tests.support.ci import missing, running
from tests.support.etcd import ADDRESSES, EtcdCluster, member_config
from tests.support.processes import MissingPart, installed

T = TypeVar("T")


@pytest.fixture()
def root() -> Iterator[Path]:
    try:
        installed("etcd", "etcd-server")
    except MissingPart as exc:
        missing(str(exc))
    path = Path(tempfile.mkdtemp(prefix="etcd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def ca() -> SiteCA:
    return create_site_ca("member-test")


async def eventually(attempt: Callable[[], Awaitable[T]], timeout: float, what: str) -> T:
    """`attempt()` until it stops raising EtcdError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await attempt()
        except EtcdError as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} still failing after {timeout}s: {e}") from e
            await asyncio.sleep(0.1)


def quick_member(
    root: Path, ca: SiteCA, name: str = "m1", address: str = ADDRESSES[0]
) -> ManagedMember:
    return ManagedMember(
        member_config(root, ca, name, address),
        backoff=Backoff(first=0.1, cap=1.0),
        ready_timeout=20,
    )


def test_killed_member_is_restarted_by_the_supervisor_with_its_data(root: Path, ca: SiteCA) -> None:
    async def scenario() -> None:
        member = quick_member(root, ca)
        await member.start()
        try:
            async with member.config.gateway() as etcd:
                await etcd.put("kept/across", b"restarts")
                first = member.pid
                assert first is not None
                os.kill(first, signal.SIGKILL)
                kv = await eventually(lambda: etcd.get("kept/across"), 15, "the member")
            assert kv is not None and kv.value == b"restarts"
            assert member.pid not in (None, first) and member.restarts == 1
        finally:
            await member.stop()
        assert member.pid is None

    asyncio.run(scenario())


def test_a_watch_broken_by_a_member_restart_resumes_without_missing_a_change(
    root: Path, ca: SiteCA
) -> None:
    async def scenario() -> None:
        member = quick_member(root, ca)
        await member.start()
        try:
            async with member.config.gateway() as etcd:
                watch = etcd.watch("w/", prefix=True, idle_timeout=5)
                async with watch:
                    await etcd.put("w/before", b"1")
                    assert [e.kv.key for e in await watch.__anext__()] == ["w/before"]
                    assert member.pid is not None
                    os.kill(member.pid, signal.SIGTERM)  # a graceful stop: {"error": ...}
                    with pytest.raises(Unavailable) as caught:
                        await asyncio.wait_for(watch.__anext__(), 10)
                assert member.config.client_url in str(caught.value)
                await eventually(lambda: etcd.put("w/while-away", b"2"), 15, "the member")
                async with etcd.watch(
                    "w/", prefix=True, start_revision=watch.next_revision
                ) as again:
                    events = await asyncio.wait_for(again.__anext__(), 5)
                assert [e.kv.key for e in events] == ["w/while-away"]
        finally:
            await member.stop()

    asyncio.run(scenario())


def test_stopped_member_is_not_restarted(root: Path, ca: SiteCA) -> None:
    async def scenario() -> None:
        member = quick_member(root, ca)
        await member.start()
        pid = member.pid
        assert pid is not None
        await member.stop()
        await asyncio.sleep(0.5)
        assert member.pid is None and member.restarts == 0
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        async with member.config.gateway(timeout=1) as etcd:
            with pytest.raises(EtcdError):
                await etcd.status()

    asyncio.run(scenario())


def test_second_and_third_controllers_join_a_running_cluster(root: Path, ca: SiteCA) -> None:
    async def scenario() -> None:
        first = quick_member(root, ca, "c1", ADDRESSES[0])
        await first.start()
        members = [first]
        try:
            async with first.config.gateway(timeout=5) as etcd:
                await etcd.put("site/created-by", b"c1")
                for name, address in (("c2", ADDRESSES[1]), ("c3", ADDRESSES[2])):
                    config = member_config(root, ca, name, address)
                    cluster = await add_member(etcd, name, config.peer_url)
                    assert cluster[name] == config.peer_url and "c1" in cluster
                    joining = ManagedMember(
                        replace(config, initial_cluster=cluster, cluster_state="existing"),
                        ready_timeout=20,
                    )
                    await joining.start()
                    members.append(joining)
                listed = await eventually(etcd.member_list, 10, "member list")
                assert sorted(m.name for m in listed) == ["c1", "c2", "c3"]
                with pytest.raises(MemberConflict, match="c2 already exists"):
                    await add_member(etcd, "c2", "https://127.0.0.14:1")
            async with members[2].config.gateway() as third:
                kv = await eventually(lambda: third.get("site/created-by"), 10, "a read on c3")
                assert kv is not None and kv.value == b"c1"
        finally:
            for member in reversed(members):
                await member.stop()

    asyncio.run(scenario())


def test_three_members_keep_working_with_one_killed_and_report_no_quorum_with_two(
    root: Path,
) -> None:
    cluster = EtcdCluster(root)
    with running(cluster):

        async def scenario() -> None:
            async with cluster.gateway(timeout=2) as etcd:
                await etcd.put("q/before", b"1")
                cluster.members[0].kill()
                await eventually(lambda: etcd.put("q/one-down", b"2"), 5, "a write")
                assert (await etcd.get("q/before")) is not None
                cluster.members[1].kill()
                started = time.monotonic()
                with pytest.raises(Unavailable) as write:
                    await etcd.put("q/two-down", b"3")
                assert time.monotonic() - started < 2 + 1.5  # the timeout, then a quick probe
                started = time.monotonic()
                with pytest.raises(Unavailable) as read:
                    await etcd.get("q/before")
                assert time.monotonic() - started < 2 + 1.5
            for caught in (write, read):
                assert cluster.members[2].config.client_url in str(caught.value)
                assert "quorum" in str(caught.value)

        asyncio.run(scenario())
