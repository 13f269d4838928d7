"""Several real control processes on one PostgreSQL database of the suite's own: no state that
matters lives in one process's memory, a change through one wakes the long-polls held by another,
and the loops that must run once move to another process when their holder dies."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from enforcer.link.enrollment import EnrollmentError, enroll
from enforcer.shared.bundle import encode_bundle, parse_bundle
from tests.support.control import ControlProcess, Site, eventually, run
from tests.support.postgres import PostgresCluster, control_processes, stop_all


@pytest.fixture(scope="module")
def pair(postgres_cluster: PostgresCluster) -> Iterator[list[ControlProcess]]:
    """Two control processes on one database, shared by this module's tests (each uses sites
    of its own; the last one kills a process)."""
    root = Path(tempfile.mkdtemp(prefix="ctl-pair-", dir="/tmp"))
    processes = control_processes(postgres_cluster, root, 2)
    yield processes
    stop_all(processes)
    if not os.environ.get("KEEP_CTL"):
        shutil.rmtree(root, ignore_errors=True)


def bundle_for(issuer: ControlProcess, via: ControlProcess, site: str) -> str:
    """A bundle issued by `issuer` that enrolls through `via`."""
    bundle = parse_bundle(issuer.bundle(site, {"customer": "acme"}))
    return encode_bundle(dataclasses.replace(bundle, url=via.url))


def site_on(site: Site, control: ControlProcess) -> Site:
    """The same site, talking to `control` from now on."""
    site.identity = dataclasses.replace(site.identity, url=control.url)
    return site


def polling_on(control: ControlProcess, site: str) -> bool:
    """Whether `site` holds a long-poll on this very process."""
    return bool(control.client().get(f"/v1/sites/{site}")["connected"])


async def post_status(site: Site, control: ControlProcess, batch: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            control.url + "/v1/sync/status", json=batch, ssl=site.identity.ssl_context()
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


def test_enrolled_through_one_process_a_site_syncs_through_the_other_and_wakes_within_a_second(
    pair: list[ControlProcess], tmp_path: Path
) -> None:
    a, b = pair

    async def scenario() -> None:
        identity = await enroll(bundle_for(a, b, "wake-1"), tmp_path / "site")
        site = site_on(Site(identity, tmp_path / "site"), a)  # long-polls on A
        site.start()
        await eventually(lambda: polling_on(a, "wake-1"))
        await asyncio.to_thread(b.push_app, "vision", "1.0")
        started = time.monotonic()
        await asyncio.to_thread(
            b.deploy,
            {"name": "v", "application": "vision", "placement": {"match-site-labels": "customer"}},
        )
        await site.wait_for(lambda: site.app_names == ["vision@1.0"], timeout=5)
        assert time.monotonic() - started < 1.0 + 0.5  # the deploy call itself included
        # and the other way round: a change through A wakes a long-poll held by B
        site_b = site_on(site, b)
        await site_b.stop()
        site_b.start()
        await eventually(lambda: polling_on(b, "wake-1"))
        await asyncio.to_thread(a.push_app, "vision", "2.0")
        started = time.monotonic()
        await site_b.wait_for(lambda: site_b.app_names == ["vision@2.0"], timeout=5)
        assert time.monotonic() - started < 1.0
        # both see the site, its status and the same revision
        for control in pair:
            record = control.client().get("/v1/sites/wake-1")
            assert record["state"] == "enrolled" and record["revision"] == site_b.revision
        await site_b.stop()

    run(scenario())


def test_a_bundle_used_on_two_processes_at_once_works_once(
    pair: list[ControlProcess], tmp_path: Path
) -> None:
    a, b = pair
    bundle = a.bundle("once-1", {"customer": "acme"})

    async def scenario() -> list[Any]:
        return await asyncio.gather(
            enroll(bundle, tmp_path / "via-a"),
            enroll(bundle_for_url(bundle, b.url), tmp_path / "via-b"),
            return_exceptions=True,
        )

    outcomes = run(scenario())
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failures) == 1, outcomes
    assert isinstance(failures[0], EnrollmentError) and "already used" in str(failures[0])
    for control in pair:
        assert control.client().get("/v1/sites/once-1")["state"] == "enrolled"


def bundle_for_url(bundle: str, url: str) -> str:
    return encode_bundle(dataclasses.replace(parse_bundle(bundle), url=url))


def test_the_same_status_batch_sent_to_two_processes_counts_once(
    pair: list[ControlProcess],
) -> None:
    a, b = pair

    async def scenario() -> None:
        site = await Site.enroll(a, "status-1")
        batch = {"seq": 1, "status": {"revision": 0, "instances": []}, "events": [{"n": 1}]}
        answers = await asyncio.gather(post_status(site, a, batch), post_status(site, b, batch))
        assert sorted(answers, key=str) == sorted(
            [(200, {"seq": 1, "applied": True}), (200, {"seq": 1, "duplicate": True})], key=str
        )
        # a replay to either process later is a duplicate, and a gap is refused by both
        for control in pair:
            assert await post_status(site, control, batch) == (200, {"seq": 1, "duplicate": True})
            status, body = await post_status(site, control, {**batch, "seq": 3})
            assert status == 409 and body["error"]["expected"] == 2
        assert await post_status(site, b, {**batch, "seq": 2, "events": [{"n": 2}]}) == (
            200,
            {"seq": 2, "applied": True},
        )
        for control in pair:
            events = control.client().get("/v1/sites/status-1/events")["events"]
            assert [e["event"] for e in events] == [{"n": 1}, {"n": 2}]

    run(scenario())


def leader(processes: list[ControlProcess]) -> ControlProcess | None:
    """The process whose log says it took the leadership lock (and that still runs)."""
    for process in processes:
        if process.proc is not None and "this process now runs" in process.log.read_text():
            return process
    return None


def test_when_the_process_holding_the_rollout_lock_is_killed_another_moves_the_rollout_on(
    pair: list[ControlProcess],
) -> None:
    async def scenario() -> None:
        await eventually(lambda: leader(pair) is not None)
        holder = leader(pair)
        assert holder is not None
        other = pair[1] if holder is pair[0] else pair[0]
        sites = [await Site.enroll(other, f"roll-{i}", {"fleet": "roll"}) for i in range(2)]
        for site in sites:
            site.start()  # long-polling on the process that lives on
        # the lock holder learns that they are online (their contact times reach it)
        await eventually(
            lambda: all(
                s["last_contact"]
                for s in holder.client().get("/v1/sites")["sites"]
                if s["name"].startswith("roll-")
            ),
            timeout=5,
        )
        other.push_app("rollapp", "1.0")
        deployment = {
            "name": "r",
            "application": "rollapp",
            "placement": {"match-site-labels": "fleet = roll"},
            "strategy": {"sites-in-parallel": 1, "healthy-time": "1s"},
        }
        other.deploy(deployment)
        for site in sites:
            await site.wait_for(lambda s=site: s.app_names == ["rollapp@1.0"], timeout=15)
        other.push_app("rollapp", "2.0")  # the rollout starts here, one site at a time
        await eventually(lambda: sum(s.app_names == ["rollapp@2.0"] for s in sites) == 1, timeout=5)
        await asyncio.to_thread(holder.stop, True)  # SIGKILL
        started = time.monotonic()
        for site in sites:
            await site.wait_for(lambda s=site: s.app_names == ["rollapp@2.0"], timeout=15)
        took = time.monotonic() - started
        assert leader([other]) is other
        deployment = other.client().get("/v1/deployments/r")
        assert deployment["target"] == "2.0", deployment
        print(f"rollout moved on {took:.1f} s after its lock holder was killed")
        for site in sites:
            await site.stop()

    run(scenario())
