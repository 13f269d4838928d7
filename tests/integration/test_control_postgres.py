"""Control on the suite's own PostgreSQL: bad database URLs, a schema newer than the code, and the
database restarted under a running control."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control.store.schema import SCHEMA_VERSION
from tests.support.control import ControlProcess, Site, eventually, run
from tests.support.postgres import PostgresCluster, control_processes, restarted, stop_all
from tests.support.processes import free_port


@pytest.fixture()
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ctl-pg-", dir="/tmp"))
    yield path
    if not os.environ.get("KEEP_CTL"):
        shutil.rmtree(path, ignore_errors=True)


def control_in(root: Path, database: str) -> ControlProcess:
    root.mkdir(parents=True, exist_ok=True)
    return ControlProcess(root, database=database)


def serve_fails(control: ControlProcess) -> str:
    """`edge-control serve` exits with an error before it listens; its stderr."""
    done = subprocess.run(
        control.command("serve"), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0, done.stdout + done.stderr
    return done.stderr


def test_a_bad_database_url_stops_control_with_one_line_naming_host_and_database(
    postgres_cluster: PostgresCluster,
    root: Path,
) -> None:
    cluster = postgres_cluster
    database = cluster.new_database("bad")
    name = cluster.name_of(database)
    wrong_password = "not-the-Secret-42"
    cases = {
        "wrong credentials": cluster.url(name, password=wrong_password),
        "no such database": cluster.url("nothing_here", password=wrong_password),
        "unreachable": f"postgresql://edgeward:{wrong_password}@127.0.0.1:{free_port()}/{name}",
    }
    for what, url in cases.items():
        control = control_in(root / what.replace(" ", "-"), url)
        error = serve_fails(control)
        lines = [line for line in error.splitlines() if line.startswith("edge-control:")]
        assert len(lines) == 1, (what, error)
        assert wrong_password not in error and cluster.password not in error, error
        if what == "unreachable":
            assert f'"{name}"' in lines[0] and "127.0.0.1:" in lines[0], lines[0]
            assert "cannot connect" in lines[0], lines[0]
        else:
            assert str(cluster.root) in lines[0], lines[0]
            wanted = "credentials" if what == "wrong credentials" else '"nothing_here"'
            assert wanted in lines[0], lines[0]
        assert not (control.state_dir / "ca.pem").exists()  # nothing made
        with pytest.raises(OSError):  # it never listened
            socket.create_connection(("127.0.0.1", control.port), timeout=1)
    # a malformed URL is refused by the configuration, naming file and line, no password shown
    control = control_in(root / "malformed", f"postgresql://u:{wrong_password}@h:x/d")
    error = serve_fails(control)
    assert "control.toml:2: database: the port in the URL is not a number" in error, error
    assert wrong_password not in error
    control = control_in(root / "no-db", f"postgresql://u:{wrong_password}@db1")
    error = serve_fails(control)
    assert "names no database" in error and wrong_password not in error, error


def test_a_schema_newer_than_the_code_is_refused_naming_both_versions(
    postgres_cluster: PostgresCluster,
    root: Path,
) -> None:
    url = postgres_cluster.new_database("newer")
    control = ControlProcess(root, database=url)
    upgraded = control.cli("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"schema version {SCHEMA_VERSION}" in upgraded.stdout
    name = postgres_cluster.name_of(url)
    postgres_cluster.sql("INSERT INTO schema_migrations VALUES (99, 0)", database=name)
    error = serve_fails(control)
    assert f"version 99, newer than this control's (version {SCHEMA_VERSION})" in error, error
    refused = control.cli("db", "upgrade")
    assert refused.returncode != 0 and "version 99" in refused.stderr
    tables = postgres_cluster.sql("SELECT count(*) FROM schema_migrations", database=name)
    assert tables == str(SCHEMA_VERSION + 1)  # nothing was applied or removed


def test_postgresql_restarted_under_two_control_processes_answers_503_then_everything_resumes(
    postgres_cluster: PostgresCluster,
    root: Path,
) -> None:
    control, other = control_processes(postgres_cluster, root, 2)

    async def scenario() -> None:
        site = await Site.enroll(control, "store-1", {"customer": "acme"})
        site.start()  # long-polls on `control`
        control.push_app("vision", "1.0")
        control.deploy(
            {"name": "v", "application": "vision", "placement": {"match-site-labels": "customer"}}
        )
        await site.wait_for(lambda: site.app_names == ["vision@1.0"])
        assert site.client is not None
        sent = list(range(5))
        for n in sent:
            site.client.push_event({"type": "tick", "n": n})
        with restarted(postgres_cluster):
            for process in (control, other):
                body = {"name": "acme", "parent": None}
                async with (
                    process.session() as s,
                    s.post(process.url + "/v1/tenants", json=body) as r,
                ):
                    answer = await r.json()
                    assert r.status == 503 and int(r.headers["Retry-After"]) >= 1
                    assert answer["error"]["code"] == "unavailable"
                    assert "cannot be reached" in answer["error"]["message"]
                    assert postgres_cluster.password not in answer["error"]["message"]
            for n in range(5, 10):
                site.client.push_event({"type": "tick", "n": n})
                sent.append(n)
            await asyncio.sleep(0.5)
        # a change through the other process, once the database is back, reaches the site
        # long-polling here: each process's listener reconnected and read what it missed
        await asyncio.to_thread(other.push_app, "vision", "2.0")
        await site.wait_for(lambda: site.app_names == ["vision@2.0"], timeout=30)
        assert other.client().post("/v1/tenants", {"name": "acme"})["name"] == "acme"

        def delivered() -> list[int]:
            events = other.client().get("/v1/sites/store-1/events", limit="100")["events"]
            return [e["event"]["n"] for e in events if e["event"].get("type") == "tick"]

        await eventually(lambda: sorted(delivered()) == sent, timeout=30)
        assert delivered() == sent  # in order, each once, and the site never enrolled again
        assert site.client.link["state"] == "connected"
        assert control.client().get("/v1/sites/store-1")["revision"] == site.revision
        await site.stop()

    try:
        run(scenario(), timeout=120)
    finally:
        stop_all([control, other])


def test_db_copy_moves_a_used_sqlite_control_and_its_sites_sync_on_without_enrolling_again(
    postgres_cluster: PostgresCluster,
    root: Path,
) -> None:
    sqlite_control = ControlProcess(root)
    sqlite_control.start()
    url = postgres_cluster.new_database("copy")

    async def desired_vaults(site: Site) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                site.identity.url + "/v1/sync/desired?revision=0&wait=0",
                ssl=site.identity.ssl_context(),
            ) as response,
        ):
            assert response.status == 200
            return list((await response.json())["vaults"])

    async def scenario() -> None:
        control = sqlite_control
        control.client().post("/v1/tenants", {"name": "acme"})
        site = await Site.enroll(control, "store-1", {"customer": "acme"})
        site.start()
        control.client().put("/v1/vaults/shop", {"distribute": "customer = acme"})
        control.client().put("/v1/vaults/shop/secrets/db", {"data": {"password": "s3cret"}})
        control.push_app("vision", "1.0")
        control.deploy(
            {"name": "v", "application": "vision", "placement": {"match-site-labels": "customer"}}
        )
        await site.wait_for(lambda: site.app_names == ["vision@1.0"])
        assert site.client is not None
        for n in range(3):
            site.client.push_event({"type": "tick", "n": n})
        await eventually(lambda: len(ticks(control)) == 3)
        before = control.client().get("/v1/sites/store-1")
        sealed_before = await desired_vaults(site)
        await asyncio.to_thread(control.stop)
        copied = control.cli("db", "copy", "--to", url)
        assert copied.returncode == 0, copied.stderr
        assert "1 sites" in copied.stdout and "1 vaults" in copied.stdout, copied.stdout
        assert postgres_cluster.password not in copied.stdout + copied.stderr
        # a second copy into the same database is refused: it is not empty any more
        again = control.cli("db", "copy", "--to", url)
        assert again.returncode != 0 and "is not empty" in again.stderr, again.stderr
        moved = ControlProcess(root, port=control.port, database=url)  # same state directory
        await asyncio.to_thread(moved.start)
        try:
            after = moved.client().get("/v1/sites/store-1")
            for key in ("revision", "labels", "enrolled", "tenants"):
                assert after[key] == before[key], key
            assert [v["name"] for v in await desired_vaults(site)] == ["shop"]
            assert len(sealed_before) == 1
            for n in range(3, 5):
                site.client.push_event({"type": "tick", "n": n})
            moved.push_app("vision", "2.0")
            await site.wait_for(lambda: site.app_names == ["vision@2.0"], timeout=20)
            await eventually(lambda: ticks(moved) == list(range(5)), timeout=20)
            assert moved.client().get("/v1/vaults/shop")["secrets"] == {"db": ["password"]}
            assert site.client.link["state"] == "connected"
            await site.stop()
        finally:
            await asyncio.to_thread(moved.stop)

    try:
        run(scenario(), timeout=120)
    finally:
        sqlite_control.stop()


def ticks(control: ControlProcess) -> list[int]:
    events = control.client().get("/v1/sites/store-1/events", limit="100")["events"]
    return [e["event"]["n"] for e in events if e["event"].get("type") == "tick"]
