"""The fleet's events and sites' logs through a real control process's API and `edge-control`:
events filtered by tenant, `events -f` following them, logs asked of a site through its
long-poll (here the site is a plain mutual-TLS client that answers as the protocol says), an
offline site's logs refused at once; and on PostgreSQL, a log request made on one control
process reaching the site that long-polls another.

The enforcer's own side (error lines forwarded, logs read from Docker) is proved in
tests/integration/test_error_forwarding.py."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from enforcer.link.enrollment import SiteIdentity, enroll
from tests.support.control import ControlProcess, api_error, app_document, eventually, run
from tests.support.postgres import PostgresCluster, control_processes, stop_all
from tests.support.processes import stop_pid


@pytest.fixture()
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ctl-ev-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class RawSite:
    """A site as control sees it: its certificate, status batches, long-polls and replies."""

    def __init__(self, identity: SiteIdentity, url: str) -> None:
        self.identity = identity
        self.url = url
        self.seq = 0

    @classmethod
    async def enroll(cls, control: ControlProcess, name: str, root: Path) -> RawSite:
        identity = await enroll(control.bundle(name), root / "sites" / name)
        return cls(identity, control.url)

    def session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.identity.ssl_context())
        return aiohttp.ClientSession(connector=connector)

    async def push(
        self, events: list[dict[str, Any]], instances: tuple[str, ...] | None = None
    ) -> None:
        """A status batch: `events`, and the instances it runs (None: no new status)."""
        self.seq += 1
        status = None
        if instances is not None:
            status = {"instances": [{"id": i, "app": i.split(".")[0]} for i in instances]}
        body = {"seq": self.seq, "status": status, "events": events}
        async with self.session() as s, s.post(f"{self.url}/v1/sync/status", json=body) as r:
            assert r.status == 200, await r.text()

    async def answer_one_request(self, url: str, revision: int, big: int = 0) -> dict[str, Any]:
        """Long-poll `url` until a request comes; reply with two lines (and first a line of
        `big` bytes); the request."""
        async with self.session() as s:
            while True:
                params = {"revision": str(revision), "wait": "20"}
                async with s.get(f"{url}/v1/sync/desired", params=params) as r:
                    if r.status == 304:
                        continue
                    doc = await r.json()
                    revision = doc.get("revision", revision)
                    requests = doc.get("requests", [])
                if requests:
                    break
            request = requests[0]
            lines = [{"time": time.time(), "stream": "stdout", "line": "listening on :80"},
                     {"time": time.time(), "stream": "stderr", "line": "ERROR disk full"}]  # fmt: skip
            if big:
                lines.insert(0, {"time": time.time(), "stream": "stdout", "line": "x" * big})
            reply = {"id": request["id"], "lines": lines[-request["tail"] :], "error": None}
            async with s.post(f"{url}/v1/sync/replies", json=reply) as r:
                assert r.status == 200 and await r.json() == {"accepted": True}
            async with s.post(f"{url}/v1/sync/replies", json=reply) as r:
                assert r.status == 404  # answered once
            return dict(request)


def error_event(instance: str, message: str) -> dict[str, Any]:
    return {"kind": "log-error", "time": time.time(), "message": message,
            "app": instance.split(".")[0], "instance": instance, "tenant": "",
            "fields": {"container": "main", "host": "h1", "stream": "stderr", "level": "error"}}  # fmt: skip


def tenant_token(control: ControlProcess, tenant: str) -> str:
    client = control.client()
    client.post("/v1/tenants", {"name": tenant})
    return str(client.post("/v1/tokens", {"tenant": tenant})["token"])


def test_events_are_shown_to_their_tenant_followed_with_f_and_logs_come_through_the_long_poll(
    control: ControlProcess, root: Path
) -> None:
    acme, globex = tenant_token(control, "acme"), tenant_token(control, "globex")
    control.client(acme).put("/v1/applications/web/versions/1", app_document("web", "1"))
    control.client(globex).put("/v1/applications/mail/versions/1", app_document("mail", "1"))
    client = control.client()

    async def body() -> None:
        site = await RawSite.enroll(control, "store-1", root)
        client.post("/v1/sites/store-1/assign", {"tenant": "acme"})
        await site.push(
            [error_event("web.main.0", "web broke"), error_event("mail.main.0", "mail broke")],
            ("web.main.0", "mail.main.0"),
        )
        # each tenant sees its own application's events; the admin sees both
        mine = control.client(acme).get("/v1/events")["events"]
        assert [(e["instance"], e["tenant"], e["message"]) for e in mine] == [
            ("web.main.0", "acme", "web broke")
        ]
        assert [e["instance"] for e in control.client(globex).get("/v1/events")["events"]] == [
            "mail.main.0"
        ]
        assert len(client.get("/v1/events", site="store-1")["events"]) == 2
        assert api_error(lambda: control.client(acme).get("/v1/events", app="mail")).status == 404

        # `edge-control events -f` prints an event within a second of its arrival
        follow = subprocess.Popen(
            control.command("--token", acme, "events", "-f", "-o", "json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("EDGEWARD_")},
        )
        try:
            assert follow.stdout is not None
            first = json.loads(await asyncio.to_thread(follow.stdout.readline))
            assert first["message"] == "web broke"
            await asyncio.sleep(0.5)  # it waits now, after the last event
            sent = time.monotonic()
            await site.push([error_event("mail.main.0", "not acme's"),
                             error_event("web.main.0", "web broke again")])  # fmt: skip
            line = await asyncio.wait_for(asyncio.to_thread(follow.stdout.readline), 10)
            assert json.loads(line)["message"] == "web broke again"
            assert time.monotonic() - sent < 2.0
        finally:
            stop_pid(follow)
            for stream in (follow.stdout, follow.stderr):
                if stream is not None:
                    stream.close()

        # `edge-control logs`: the site finds the request in its long-poll and answers it
        answering = asyncio.create_task(site.answer_one_request(control.url, 0))
        await asyncio.sleep(0.3)
        done = await asyncio.to_thread(
            control.cli, "--token", acme, "logs", "store-1", "web.main.0", "--tail", "2"
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "listening on :80\n" and done.stderr == "ERROR disk full\n"
        request = await asyncio.wait_for(answering, 5)
        assert (request["instance"], request["tail"], request["container"]) == (
            "web.main.0", 2, None,
        )  # fmt: skip
        # another tenant's instance, or one the site does not run, is not there
        refused = await asyncio.to_thread(
            control.cli, "--token", acme, "logs", "store-1", "mail.main.0"
        )
        assert refused.returncode == 1
        assert "instance 'mail.main.0' does not exist at site 'store-1'" in refused.stderr

    run(body(), timeout=60)


def test_logs_of_a_site_that_holds_no_long_poll_are_refused_at_once(
    control: ControlProcess, root: Path
) -> None:
    async def body() -> None:
        await RawSite.enroll(control, "store-3", root)
        started = time.monotonic()
        done = await asyncio.to_thread(control.cli, "logs", "store-3", "web.main.0")
        assert done.returncode == 1
        assert "site 'store-3' is offline: it has never contacted control" in done.stderr
        assert time.monotonic() - started < 2.0  # the CLI's own start included
        error = api_error(lambda: control.client().get("/v1/sites/nowhere/logs", instance="x.y.0"))
        assert error.status == 404 and "site 'nowhere' does not exist" in str(error)
        error = api_error(lambda: control.client().get("/v1/sites/store-3/logs", instance="a.b.0"))
        assert error.status == 503 and error.code == "site-offline"

    run(body(), timeout=30)


def test_on_postgresql_a_log_request_made_on_one_process_reaches_the_site_polling_another(
    postgres_cluster: PostgresCluster, root: Path
) -> None:
    """Two control processes on one database: the operator calls process A, the site talks
    to process B only (its long-poll, its status, its reply)."""
    a, b = control_processes(postgres_cluster, root, 2)
    try:

        async def body() -> None:
            site = await RawSite.enroll(a, "store-9", root)
            site.url = b.url

            async def b_knows_the_site() -> bool:
                try:
                    await site.push([], ("web.main.0",))
                except AssertionError:  # 403 until B has read the enrollment from the feed
                    site.seq -= 1
                    return False
                return True

            await eventually(b_knows_the_site, timeout=10)

            async def a_knows_the_status() -> bool:
                status = (await a.call("GET", "/v1/sites/store-9"))["status"]
                return status is not None and bool(status["instances"])

            await eventually(a_knows_the_status, timeout=10)
            # a follower on A is woken by an event that arrived through B
            last = (await a.call("GET", "/v1/events"))["last"]
            following = asyncio.create_task(a.call("GET", f"/v1/events?after={last}&wait=20"))
            await asyncio.sleep(0.3)
            await site.push([error_event("web.main.0", "through B")])
            page = await asyncio.wait_for(following, 5)
            assert [e["message"] for e in page["events"]] == ["through B"]
            # the request made on A is handed out in B's long-poll; B takes the reply
            # (with a line of 1 MB: a reply is larger than other requests may be)
            answering = asyncio.create_task(site.answer_one_request(b.url, 0, big=1_000_000))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            got = await a.call("GET", "/v1/sites/store-9/logs?instance=web.main.0&tail=3")
            assert time.monotonic() - started < 3.0
            assert [len(line["line"]) for line in got["lines"]] == [1_000_000, 16, 15]
            assert got["lines"][-1]["line"] == "ERROR disk full"
            await asyncio.wait_for(answering, 5)

        run(body(), timeout=60)
    finally:
        stop_all([a, b])
