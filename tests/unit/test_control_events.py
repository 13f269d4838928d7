"""The fleet's events and a site's logs at control (`control.service.events`, `.logs`), in
process over a real SQLite store; the HTTP side against a real control process is in
tests/integration/test_control_events.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from control.fleet.access import Principal
from control.model import AppVersion, Invalid, NotFound, Site
from control.service import ControlService
from control.service import logs as logs_module
from control.service.logs import SiteFailed, SiteOffline, SiteTimeout
from control.store.sqlite import SQLiteStore
from tests.support.service import run_service

ADMIN = Principal("system", frozenset({"system", "acme", "acme-shop", "globex"}))
ACME = Principal("acme", frozenset({"acme", "acme-shop"}))
GLOBEX = Principal("globex", frozenset({"globex"}))


async def _tenants_apps_and_sites(service: ControlService, store: SQLiteStore) -> None:
    await service.tenants.create(ADMIN, "acme", "system")
    await service.tenants.create(ADMIN, "acme-shop", "acme")
    await service.tenants.create(ADMIN, "globex", "system")
    for app, tenant in (("web", "acme"), ("shop", "acme-shop"), ("mail", "globex")):
        service.fleet.apps[(app, "1")] = AppVersion(app, "1", tenant, {}, "d", 1.0)
    for name in ("s1", "s2"):
        site = Site(name, {}, 1.0, tenants=["acme", "globex"], enrolled=1.0)
        site.status = {"instances": [{"id": "web.web.0"}, {"id": "mail.mail.0"}]}
        site.status_time = 1.0
        await store.sites.save(site)
        service.fleet.sites[name] = site


def with_service(tmp_path: Path, body: Callable[[ControlService], Awaitable[Any]]) -> Any:
    return run_service(tmp_path, body, prepare=_tenants_apps_and_sites, events_keep=3600.0)


def error(instance: str, app: str = "", tenant: str = "acme") -> dict[str, Any]:
    return {"kind": "log-error", "time": time.time(), "message": f"boom in {instance}",
            "app": app, "instance": instance, "tenant": tenant,
            "fields": {"stream": "stderr"}}  # fmt: skip


async def push(service: ControlService, site: str, seq: int, *events: Any) -> None:
    """What POST /v1/sync/status does with a batch's events."""
    owned = service.events.attribute(list(events))
    result = await service.sync.push_status(service.fleet.sites[site], seq, None, owned)
    assert result.applied
    service.events.arrived()


def test_events_belong_to_their_applications_tenant_not_to_what_the_site_says(
    tmp_path: Path,
) -> None:
    async def body(service: ControlService) -> None:
        await push(service, "s1", 1,
                   error("web.web.0", tenant="globex"),  # the site's word: not taken
                   error("shop.shop.0", tenant=""),
                   error("mail.mail.0", "mail", tenant="acme"),
                   error("local.x.0", tenant="acme"),  # a site-local app: the system's
                   {"kind": "events-dropped", "message": "3 events dropped", "fields": {}})  # fmt: skip
        everything = await service.events.list(service.events.query(ADMIN, None, None, None, 100))
        assert [(e["instance"], e["tenant"]) for e in everything.events] == [
            ("web.web.0", "acme"), ("shop.shop.0", "acme-shop"), ("mail.mail.0", "globex"),
            ("local.x.0", ""), ("", ""),
        ]  # fmt: skip
        acme = await service.events.list(service.events.query(ACME, None, None, None, 100))
        assert [e["instance"] for e in acme.events] == ["web.web.0", "shop.shop.0"]
        globex = await service.events.list(service.events.query(GLOBEX, "s1", None, None, 100))
        assert [e["instance"] for e in globex.events] == ["mail.mail.0"]
        web = await service.events.list(service.events.query(ACME, None, "web", None, 100))
        assert [e["instance"] for e in web.events] == ["web.web.0"]

    with_service(tmp_path, body)


def test_a_tenant_asking_for_a_site_or_application_it_cannot_see_gets_404(
    tmp_path: Path,
) -> None:
    async def body(service: ControlService) -> None:
        with pytest.raises(NotFound, match="site 'nowhere' does not exist"):
            service.events.query(ADMIN, "nowhere", None, None, 10)
        with pytest.raises(NotFound, match="application 'mail' does not exist"):
            service.events.query(ACME, None, "mail", None, 10)
        service.fleet.sites["s3"] = Site("s3", {}, 1.0, tenants=["globex"], enrolled=1.0)
        with pytest.raises(NotFound, match="site 's3' does not exist"):
            service.events.query(ACME, "s3", None, None, 10)

    with_service(tmp_path, body)


def test_a_follower_waiting_after_the_last_event_is_answered_when_one_arrives(
    tmp_path: Path,
) -> None:
    async def body(service: ControlService) -> None:
        await push(service, "s1", 1, error("web.web.0"))
        first = await service.events.list(service.events.query(ACME, None, None, None, 100))
        after = service.events.query(ACME, None, None, first.last, 100)
        started = time.monotonic()
        empty = await service.events.list(after, wait=0.3)
        assert empty.events == [] and empty.last == first.last
        assert time.monotonic() - started >= 0.3
        waiting = asyncio.create_task(service.events.list(after, wait=30))
        await asyncio.sleep(0.1)
        await push(service, "s2", 1, error("mail.mail.0", "mail"))  # not acme's: still waits
        await asyncio.sleep(0.2)
        assert not waiting.done()
        started = time.monotonic()
        await push(service, "s2", 2, error("web.web.0"))
        page = await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - started < 1.0
        assert [(e["site"], e["instance"]) for e in page.events] == [("s2", "web.web.0")]

    with_service(tmp_path, body)


def test_events_older_than_keep_are_forgotten(tmp_path: Path) -> None:
    async def body(service: ControlService) -> None:
        now = [1000.0]
        service.core.clock = lambda: now[0]
        await push(service, "s1", 1, error("web.web.0"))
        now[0] += 3000.0
        await push(service, "s1", 2, error("web.web.0"))
        assert await service.events.trim() == 0
        now[0] += 1000.0  # the first is now 4000 s old: past keep (3600 s)
        assert await service.events.trim() == 1
        left = await service.events.list(service.events.query(ADMIN, None, None, None, 100))
        assert [e["received"] for e in left.events] == [4000.0]

    with_service(tmp_path, body)


# --- logs -----------------------------------------------------------------------------------


async def site_answering(
    service: ControlService, site: str, answer: Callable[[dict[str, Any]], dict[str, Any]]
) -> list[dict[str, Any]]:
    """A site's long-poll loop as the API serves it: wait, take the requests, reply."""
    handed: list[dict[str, Any]] = []
    while True:
        if not service.logs.pending(site):
            await service.fleet.desired.wait(site, 30)
        for request in await service.logs.take(site):
            handed.append(request)
            await service.logs.reply(
                service.fleet.sites[site], {"id": request["id"], **answer(request)}
            )


def test_logs_are_asked_of_the_site_in_its_long_poll_and_its_reply_answers_the_operator(
    tmp_path: Path,
) -> None:
    async def body(service: ControlService) -> None:
        lines = [{"time": 1.0, "stream": "stdout", "line": "hello"},
                 {"time": 2.0, "stream": "stderr", "line": "oops"}]  # fmt: skip
        seen: list[dict[str, Any]] = []

        def answer(request: dict[str, Any]) -> dict[str, Any]:
            seen.append(request)
            return {"lines": lines[-request["tail"] :], "error": None}

        site = asyncio.create_task(site_answering(service, "s1", answer))
        await asyncio.sleep(0.05)
        try:
            started = time.monotonic()
            got = await service.logs.fetch(ACME, "s1", "web.web.0", None, 1)
            assert time.monotonic() - started < 1.0
            assert got == {"site": "s1", "instance": "web.web.0", "container": None,
                           "lines": lines[-1:]}  # fmt: skip
            assert seen[0]["kind"] == "logs" and seen[0]["tail"] == 1
            assert seen[0]["instance"] == "web.web.0" and seen[0]["container"] is None
            # an answered request is gone: a second reply is refused
            with pytest.raises(NotFound, match="unknown, answered already, or expired"):
                await service.logs.reply(service.fleet.sites["s1"], {"id": seen[0]["id"]})
        finally:
            site.cancel()

    with_service(tmp_path, body)


def test_a_site_that_answers_with_an_error_gives_the_operator_that_error(
    tmp_path: Path,
) -> None:
    async def body(service: ControlService) -> None:
        failing = {"lines": [], "error": "no container 'x' in instance web.web.0"}
        site = asyncio.create_task(site_answering(service, "s1", lambda _: failing))
        await asyncio.sleep(0.05)
        try:
            with pytest.raises(SiteFailed, match=r"no container 'x' in instance web\.web\.0"):
                await service.logs.fetch(ADMIN, "s1", "web.web.0", "x", 10)
        finally:
            site.cancel()

    with_service(tmp_path, body)


def test_logs_of_an_offline_site_are_refused_at_once_saying_since_when(tmp_path: Path) -> None:
    async def body(service: ControlService) -> None:
        started = time.monotonic()
        with pytest.raises(SiteOffline, match="'s1' is offline: it has never contacted control"):
            await service.logs.fetch(ADMIN, "s1", "web.web.0", None, 10)
        service.fleet.sites["s2"].last_contact = 1_700_000_000.0
        with pytest.raises(SiteOffline, match="site 's2' offline since 2023-11-14T22:13:20Z"):
            await service.logs.fetch(ADMIN, "s2", "web.web.0", None, 10)
        assert time.monotonic() - started < 0.5

    with_service(tmp_path, body)


def test_a_site_seen_a_moment_ago_that_does_not_poll_again_is_offline_after_a_short_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "HAND_WAIT", 0.5)

    async def body(service: ControlService) -> None:
        service.core.clock = lambda: 1_700_000_005.0
        service.fleet.sites["s1"].last_contact = 1_700_000_000.0  # between two polls, maybe
        started = time.monotonic()
        with pytest.raises(SiteOffline, match="site 's1' offline since 2023-11-14T22:13:20Z"):
            await service.logs.fetch(ADMIN, "s1", "web.web.0", None, 10)
        assert 0.5 <= time.monotonic() - started < 2.0
        # a site seen longer ago than that is refused at once
        service.fleet.sites["s1"].last_contact = 1_700_000_005.0 - 60
        started = time.monotonic()
        with pytest.raises(SiteOffline):
            await service.logs.fetch(ADMIN, "s1", "web.web.0", None, 10)
        assert time.monotonic() - started < 0.3

    with_service(tmp_path, body)


def test_a_site_that_takes_the_request_and_never_answers_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "REPLY_WAIT", 1.0)

    async def body(service: ControlService) -> None:
        async def silent_site() -> None:
            while True:
                await service.fleet.desired.wait("s1", 30)
                await service.logs.take("s1")

        site = asyncio.create_task(silent_site())
        await asyncio.sleep(0.05)
        try:
            with pytest.raises(SiteTimeout, match="did not answer the log request within 1 s"):
                await service.logs.fetch(ADMIN, "s1", "web.web.0", None, 10)
        finally:
            site.cancel()

    with_service(tmp_path, body)


def test_logs_of_an_instance_that_is_not_there_or_not_the_tenants_are_404(
    tmp_path: Path,
) -> None:
    async def body(service: ControlService) -> None:
        with pytest.raises(NotFound, match=r"instance 'web\.web\.7' does not exist at site 's1'"):
            await service.logs.fetch(ADMIN, "s1", "web.web.7", None, 10)
        with pytest.raises(NotFound, match=r"instance 'mail\.mail\.0' does not exist"):
            await service.logs.fetch(ACME, "s1", "mail.mail.0", None, 10)
        with pytest.raises(NotFound, match="site 'nowhere' does not exist"):
            await service.logs.fetch(ADMIN, "nowhere", "web.web.0", None, 10)
        with pytest.raises(Invalid, match="tail must be from 1 to 10000"):
            await service.logs.fetch(ADMIN, "s1", "web.web.0", None, 0)
        with pytest.raises(Invalid, match="lines must be a list"):
            await service.logs.reply(service.fleet.sites["s1"], {"id": "x", "lines": "no"})

    with_service(tmp_path, body)


def test_events_keep_is_a_duration_of_at_least_a_minute_in_control_toml() -> None:
    from control.config import ConfigError, parse_config

    assert parse_config("").events.keep == 14 * 24 * 3600.0
    assert parse_config('[events]\nkeep = "72h"\n').events.keep == 72 * 3600.0
    with pytest.raises(ConfigError, match=r'c.toml:2: events.keep: "3" is not a duration'):
        parse_config('[events]\nkeep = "3"\n', "c.toml")
    with pytest.raises(ConfigError, match=r"events\.keep must be at least 1m, not '5s'"):
        parse_config('[events]\nkeep = "5s"\n', "c.toml")
    with pytest.raises(ConfigError, match=r"c.toml:2: unknown key 'kept' in \[events\]"):
        parse_config('[events]\nkept = "5h"\n', "c.toml")
