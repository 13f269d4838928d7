"""Control as a real `edge-control serve` process over real TLS, with sites as SyncClients."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from enforcer.link.enrollment import EnrollmentError, enroll
from enforcer.shared.bundle import encode_bundle, parse_bundle
from tests.support.control import (
    ControlProcess,
    Site,
    api_error,
    app_document,
    eventually,
    run,
)
from tests.support.postgres import PostgresCluster


def has_apps(site: Site, names: list[str]) -> bool:
    return site.app_names == names


async def raw_get(site: Site, path: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(site.identity.url + path, ssl=site.identity.ssl_context()) as response,
    ):
        return response.status, await response.read()


async def raw_post(site: Site, path: str, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            site.identity.url + path, json=body, ssl=site.identity.ssl_context()
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


@pytest.fixture(params=["sqlite", "postgresql"])
def control(request: pytest.FixtureRequest) -> Iterator[ControlProcess]:
    """Every test of this module runs against control on SQLite and on PostgreSQL (a fresh
    database of the session's cluster per test)."""
    database = ""
    if request.param == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        database = cluster.new_database("api")
    root = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))
    process = ControlProcess(root, database=database)
    process.start()
    yield process
    process.stop()
    shutil.rmtree(root, ignore_errors=True)


# --- operators ----------------------------------------------------------------------------


def test_first_start_writes_ca_and_a_private_admin_token(control: ControlProcess) -> None:
    token = control.state_dir / "admin-token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert (control.state_dir / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE")
    assert control.client().get("/v1/health") == {"status": "ok"}
    assert "/v1/sync/desired" in control.client().get("/v1/openapi.json")["paths"]
    metrics = control.client().get("/v1/metrics")
    assert "edgeward_control_sites 0" in metrics


def test_operator_calls_without_or_with_a_wrong_token_are_refused(control: ControlProcess) -> None:
    for token in ("", "ewt_wrong"):
        error = api_error(partial(control.client(token).get, "/v1/sites"))
        assert error.status == 401 and error.code == "unauthorized"
    result = control.cli("site", "ls", "--token", "ewt_wrong")
    assert result.returncode == 1
    assert result.stderr.strip() == "edge-control: the token is not valid"
    assert control.cli("site", "ls").returncode == 0  # defaults to the local admin token


def test_cli_reaches_control_through_environment_variables(
    control: ControlProcess, tmp_path: Path
) -> None:
    env = control.cli_env()
    result = control.cli(
        "--state-dir", str(tmp_path / "elsewhere"), "tenant", "ls", "-o", "json", env=env
    )
    assert result.returncode == 0, result.stderr
    assert [t["name"] for t in json.loads(result.stdout)] == ["system"]


def test_tenant_token_sees_only_its_own_tenant(control: ControlProcess) -> None:
    assert control.cli("tenant", "create", "acme").returncode == 0
    assert control.cli("tenant", "create", "acme-eu", "--parent", "acme").returncode == 0
    assert control.cli("tenant", "create", "other").returncode == 0
    token = control.cli("token", "create", "--tenant", "acme").stdout.strip()
    tenants = control.client(token).get("/v1/tenants")["tenants"]
    assert sorted(t["name"] for t in tenants) == ["acme", "acme-eu"]
    error = api_error(lambda: control.client(token).post("/v1/enrollment/tokens", {"site": "x"}))
    assert error.status == 403


def test_pushing_a_version_again_is_idempotent_and_a_different_spec_conflicts(
    control: ControlProcess, tmp_path: Path
) -> None:
    spec = tmp_path / "app.yaml"
    spec.write_text(
        "name: vision\nversion: '1.0'\nservices:\n  - name: d\n    containers:\n"
        "      - {name: main, image: busybox}\n"
    )
    first = control.cli("app", "push", "-f", str(spec), "-o", "json")
    assert first.returncode == 0 and json.loads(first.stdout)["created"] is True
    again = control.cli("app", "push", "-f", str(spec), "-o", "json")
    assert again.returncode == 0 and json.loads(again.stdout)["created"] is False
    spec.write_text(spec.read_text().replace("busybox", "busybox:2"))
    conflict = control.cli("app", "push", "-f", str(spec))
    assert conflict.returncode == 1
    assert "exists with a different spec" in conflict.stderr
    assert len(conflict.stderr.strip().splitlines()) == 1
    error = api_error(
        lambda: control.client().put(
            "/v1/applications/vision/versions/1.0", app_document("vision", "1.0", "other")
        )
    )
    assert error.status == 409
    shown = control.cli("app", "show", "vision", "-o", "json")
    assert json.loads(shown.stdout)["spec"]["services"][0]["containers"][0]["image"] == "busybox"


def test_bad_input_gets_clear_4xx_errors_and_nothing_is_stored(control: ControlProcess) -> None:
    client = control.client()
    bad_app = app_document("vision", "1.0")
    bad_app["services"][0]["replicaz"] = 2
    error = api_error(lambda: client.put("/v1/applications/vision/versions/1.0", bad_app))
    assert error.status == 422 and "services[0].replicaz" in str(error)
    assert client.get("/v1/applications")["applications"] == []
    control.push_app("vision", "1.0")
    syntax = {
        "name": "d",
        "application": "vision",
        "placement": {"match-site-labels": "customer = = acme"},
    }
    error = api_error(lambda: control.deploy(syntax))
    assert error.status == 422 and "column 12" in str(error)
    unknown_field = {
        "name": "d",
        "application": "vision",
        "placement": {"all-sites": True},
        "strategy": {"canary": "x"},
    }
    assert "strategy.canary: unknown field" in str(api_error(lambda: control.deploy(unknown_field)))
    unknown_app = {"name": "d", "application": "nope", "placement": {"all-sites": True}}
    assert "'nope' does not exist" in str(api_error(lambda: control.deploy(unknown_app)))
    unknown_version = {
        "name": "d",
        "application": "vision",
        "version": "9",
        "placement": {"all-sites": True},
    }
    assert "no version '9'" in str(api_error(lambda: control.deploy(unknown_version)))
    assert client.get("/v1/deployments")["deployments"] == []
    huge = app_document("vision", "2.0")
    huge["services"][0]["containers"][0]["env"] = {"X": "x" * (2 * 1024 * 1024)}
    error = api_error(lambda: client.put("/v1/applications/vision/versions/2.0", huge))
    assert error.status == 413
    error = api_error(lambda: client.request("PUT", "/v1/deployments/d", None))
    assert error.status == 422


# --- enrollment ---------------------------------------------------------------------------


def test_a_bundle_enrolls_once(control: ControlProcess, tmp_path: Path) -> None:
    bundle = control.bundle("store-1", {"customer": "acme"})
    identity = run(enroll(bundle, tmp_path / "site"))
    assert identity.site == "store-1"
    assert identity.key_path.stat().st_mode & 0o777 == 0o600
    assert identity.ca_path.read_bytes() == (control.state_dir / "ca.pem").read_bytes()
    with pytest.raises(EnrollmentError, match="already used"):
        run(enroll(bundle, tmp_path / "again"))
    sites = control.client().get("/v1/sites")["sites"]
    assert [(s["name"], s["state"], s["labels"]["customer"]) for s in sites] == [
        ("store-1", "enrolled", "acme")
    ]


def test_an_expired_bundle_is_refused(control: ControlProcess, tmp_path: Path) -> None:
    bundle = control.bundle("store-1", ttl=0.5)
    time.sleep(1.0)
    with pytest.raises(EnrollmentError, match="expired"):
        run(enroll(bundle, tmp_path / "site"))
    assert not (tmp_path / "site" / "site" / "key.pem").exists()


def test_a_bundle_with_the_wrong_ca_fingerprint_is_refused(
    control: ControlProcess, tmp_path: Path
) -> None:
    good = parse_bundle(control.bundle("store-1"))
    forged = encode_bundle(type(good)(good.url, "0" * 64, good.secret, good.site))
    with pytest.raises(EnrollmentError, match="does not match the bundle"):
        run(enroll(forged, tmp_path / "site"))
    run(enroll(encode_bundle(good), tmp_path / "site"))  # the secret was never sent


# --- sync ---------------------------------------------------------------------------------


def test_deploying_by_labels_and_relabelling_adds_and_removes_applications(
    control: ControlProcess,
) -> None:
    async def scenario() -> None:
        acme = await Site.enroll(control, "store-1", {"customer": "acme"})
        other = await Site.enroll(control, "store-2", {"customer": "other"})
        acme.start()
        other.start()
        control.push_app("vision", "1.0")
        control.deploy(
            {
                "name": "vision-acme",
                "application": "vision",
                "version": "latest",
                "placement": {"match-site-labels": "customer = acme"},
            }
        )
        await acme.wait_for(lambda: acme.app_names == ["vision@1.0"])
        spec = acme.applications[0]["spec"]
        assert spec["name"] == "vision" and acme.applications[0]["tenant"] == "system"
        assert other.app_names == []
        await asyncio.to_thread(control.cli, "site", "label", "store-2", "customer=acme")
        await other.wait_for(lambda: other.app_names == ["vision@1.0"])
        await asyncio.to_thread(control.cli, "site", "label", "store-1", "customer-")
        await acme.wait_for(lambda: acme.app_names == [])
        control.push_app("vision", "2.0")
        await other.wait_for(lambda: other.app_names == ["vision@2.0"])
        status = await asyncio.to_thread(
            control.cli, "deployment", "status", "vision-acme", "-o", "json"
        )
        sites = json.loads(status.stdout)["sites"]
        assert [s["site"] for s in sites] == ["store-2"]
        await eventually(
            lambda: control.client().get("/v1/deployments/vision-acme/status")["sites"][0][
                "in_sync"
            ]
        )
        await acme.stop()
        await other.stop()

    run(scenario())


def test_the_site_comes_from_the_certificate_not_from_the_request(control: ControlProcess) -> None:
    async def scenario() -> None:
        mine = await Site.enroll(control, "store-1", {"customer": "acme"})
        await Site.enroll(control, "store-2", {"customer": "other"})
        control.push_app("vision", "1.0")
        control.deploy(
            {
                "name": "v",
                "application": "vision",
                "placement": {"match-site-labels": "customer = other"},
            }
        )
        status, body = await raw_get(mine, "/v1/sync/desired?revision=0&wait=0&site=store-2")
        assert status == 200 and json.loads(body)["applications"] == []
        async with aiohttp.ClientSession() as session:  # no client certificate at all
            context = ssl.create_default_context(cafile=str(mine.identity.ca_path))
            async with session.get(control.url + "/v1/sync/desired", ssl=context) as r:
                assert r.status == 401
                assert "client certificate" in (await r.json())["error"]["message"]

    run(scenario())


def test_a_revoked_site_is_refused(control: ControlProcess) -> None:
    async def scenario() -> None:
        site = await Site.enroll(control, "store-1")
        status, _ = await raw_get(site, "/v1/sync/desired?revision=0&wait=0")
        assert status == 200
        result = await asyncio.to_thread(control.cli, "site", "revoke", "store-1")
        assert result.returncode == 0, result.stderr
        status, body = await raw_get(site, "/v1/sync/desired?revision=0&wait=0")
        assert status == 403 and b"revoked" in body
        sync = site.start()
        await eventually(lambda: sync.link["state"] == "refused")
        assert "revoked" in sync.link["description"]
        await site.stop()

    run(scenario())


def test_long_poll_answers_at_once_on_change_and_304_after_the_wait(
    control: ControlProcess,
) -> None:
    async def scenario() -> None:
        site = await Site.enroll(control, "store-1")
        status, body = await raw_get(site, "/v1/sync/desired?revision=0&wait=5")
        revision = json.loads(body)["revision"]
        started = time.monotonic()
        status, _ = await raw_get(site, f"/v1/sync/desired?revision={revision}&wait=1")
        assert status == 304 and 0.8 <= time.monotonic() - started < 3
        waiting = asyncio.create_task(
            raw_get(site, f"/v1/sync/desired?revision={revision}&wait=60")
        )
        await asyncio.sleep(0.5)
        control.push_app("vision", "1.0")
        changed = time.monotonic()
        await asyncio.to_thread(
            control.deploy, {"name": "v", "application": "vision", "placement": {"all-sites": True}}
        )
        status, body = await waiting
        assert status == 200 and time.monotonic() - changed < 2
        answer = json.loads(body)
        assert answer["revision"] > revision
        assert [a["name"] for a in answer["applications"]] == ["vision"]

    run(scenario())


def test_status_batches_apply_once_and_gaps_are_refused(control: ControlProcess) -> None:
    async def scenario() -> None:
        site = await Site.enroll(control, "store-1")
        batch = {
            "seq": 1,
            "status": {"revision": 0, "instances": []},
            "events": [{"type": "started", "n": 1}],
        }
        assert await raw_post(site, "/v1/sync/status", batch) == (200, {"seq": 1, "applied": True})
        assert await raw_post(site, "/v1/sync/status", batch) == (
            200,
            {"seq": 1, "duplicate": True},
        )
        status, body = await raw_post(site, "/v1/sync/status", {**batch, "seq": 3})
        assert status == 409 and body["error"]["code"] == "out-of-order"
        assert "expected seq 2" in body["error"]["message"] and body["error"]["expected"] == 2
        events = control.client().get("/v1/sites/store-1/events")["events"]
        assert [e["event"] for e in events] == [{"type": "started", "n": 1}]

    run(scenario())


def test_control_restart_on_the_same_state_dir_keeps_everything(control: ControlProcess) -> None:
    async def scenario() -> None:
        site = await Site.enroll(control, "store-1", {"customer": "acme"})
        control.push_app("vision", "1.0")
        control.deploy(
            {
                "name": "v",
                "application": "vision",
                "placement": {"match-site-labels": "customer = acme"},
            }
        )
        token = control.admin_token
        fingerprint = parse_bundle(control.bundle("store-2")).ca_fingerprint
        _, body = await raw_get(site, "/v1/sync/desired?revision=0&wait=0")
        before = json.loads(body)
        await asyncio.to_thread(control.stop)
        await asyncio.to_thread(control.start)
        assert control.admin_token == token
        assert parse_bundle(control.bundle("store-3")).ca_fingerprint == fingerprint
        status, _ = await raw_get(site, f"/v1/sync/desired?revision={before['revision']}&wait=1")
        assert status == 304  # same revision, same certificate still valid
        _, body = await raw_get(site, "/v1/sync/desired?revision=0&wait=0")
        assert json.loads(body) == before
        assert [d["name"] for d in control.client().get("/v1/deployments")["deployments"]] == ["v"]

    run(scenario())


@pytest.mark.slow
def test_sites_reconnect_after_a_control_outage_and_deliver_every_event_once(
    control: ControlProcess,
) -> None:
    async def scenario() -> None:
        sites = [await Site.enroll(control, f"store-{i}", {"customer": "acme"}) for i in range(3)]
        for site in sites:
            site.start()
        control.push_app("vision", "1.0")
        control.deploy(
            {
                "name": "v",
                "application": "vision",
                "placement": {"match-site-labels": "customer = acme"},
            }
        )
        for site in sites:
            await site.wait_for(partial(has_apps, site, ["vision@1.0"]))
        sent: dict[str, list[int]] = {s.identity.site: [] for s in sites}

        def emit(n: int) -> None:
            for site in sites:
                assert site.client is not None
                site.client.push_event({"type": "tick", "n": n})
                sent[site.identity.site].append(n)

        for n in range(5):
            emit(n)
        await asyncio.to_thread(control.stop, True)  # SIGKILL
        for n in range(5, 15):
            emit(n)
        await eventually(
            lambda: all(
                s.client is not None and s.client.link["state"] == "unreachable" for s in sites
            )
        )
        # one site's enforcer restarts while control is away: its queue survives
        await sites[0].stop()
        sites[0].start()
        for n in range(15, 20):
            emit(n)
        await asyncio.to_thread(control.start)
        control.push_app("vision", "2.0")
        for site in sites:
            await site.wait_for(partial(has_apps, site, ["vision@2.0"]), timeout=20)

        def delivered(name: str) -> list[int]:
            events = control.client().get(f"/v1/sites/{name}/events", limit="1000")["events"]
            return [e["event"]["n"] for e in events]

        for name, numbers in sent.items():
            await eventually(
                partial(lambda n, ns: sorted(delivered(n)) == ns, name, numbers), timeout=20
            )
            assert delivered(name) == numbers  # in order, each once
        for site in sites:
            assert site.client is not None and site.client.link["state"] == "connected"
            await site.stop()

    run(scenario(), timeout=150)
