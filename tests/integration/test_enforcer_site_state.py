"""`GET /v1/site` and `GET /v1/health` report real state, read from a real enforcer process: the
hosts and the leader from the membership record in its store, the store's health from querying
it, the control link from the sync client."""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from enforcer.cli.client import Client
from tests.support.apps import app, sleeper
from tests.support.control import ControlProcess
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine


def client(enforcer: EnforcerProc) -> Client:
    return Client(enforcer.socket, timeout=10)


def wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_site_lists_this_host_from_the_membership_record_as_its_leader(
    enforcer: EnforcerProc,
) -> None:
    site = client(enforcer).site()
    [host] = site["hosts"]
    assert host["id"] == enforcer.host_id
    assert host["role"] == "controller" and host["state"] == "alive"
    assert 0 <= host["lease-age"] < 15
    assert site["leader"] == enforcer.host_id
    assert site["store"]["kind"] == "sqlite" and site["store"]["state"] == "ok"
    assert site["control"]["enrolled"] is False

    # the leader is what the record says: a lease that looks expired makes no leader, until
    # the host renews it
    db = sqlite3.connect(enforcer.state_dir / "enforcer.db", timeout=10)
    with db:
        db.execute("UPDATE hosts SET renewed = renewed - 3600 WHERE id = ?", (enforcer.host_id,))
    db.close()
    site = client(enforcer).site()
    assert site["leader"] is None
    assert site["hosts"][0]["state"] == "dead" and site["hosts"][0]["lease-age"] > 3000
    wait(lambda: client(enforcer).site()["leader"] == enforcer.host_id, 15, "the lease renewed")


def test_health_and_status_report_a_store_that_cannot_be_read(enforcer: EnforcerProc) -> None:
    health = client(enforcer).health()
    assert health["healthy"] is True and health["checks"]["store"] == "ok"
    assert health["control"] == "not enrolled (site-local)"

    db = sqlite3.connect(enforcer.state_dir / "enforcer.db", timeout=10)
    with db:
        db.execute("DROP TABLE vaults")
    db.close()

    health = client(enforcer).health()
    assert health["healthy"] is False
    assert health["checks"]["store"].startswith("failed: ")
    assert "vaults" in health["checks"]["store"]
    assert client(enforcer).site()["store"]["state"] == "failed"
    res = enforcer.cli("status", "--check")
    assert res.returncode == 1
    assert "store" in res.stderr


def test_deleting_an_application_that_control_owns_is_refused(
    control: ControlProcess,
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    bundle = control.bundle("store-rm", {"customer": "acme"})
    root = Path(tempfile.mkdtemp(prefix="rm-", dir="/tmp"))
    enf = EnforcerProc(root, engine.url, extra_config=f'[control]\nenrollment = "{bundle}"\n')
    enf.start()
    try:
        control.client().put(
            "/v1/applications/owned/versions/1", app("owned", sleeper("s", test_image))
        )
        control.deploy(
            {"name": "owned-acme", "application": "owned", "version": "latest",
             "placement": {"match-site-labels": "customer = acme"}}
        )  # fmt: skip
        enf.wait_running("owned.s.0", timeout=60)
        res = enf.cli("rm", "owned")
        assert res.returncode != 0
        assert "managed by control" in res.stderr and "only control removes it" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        time.sleep(1)
        assert enf.ps()["owned.s.0"]["state"] == "running"
        assert client(enf).application("owned")["source"] == "control"
    finally:
        enf.stop()
        enf.remove_firewall()
        for c in docker_client.containers.list(
            all=True, filters={"label": ["edgeward.managed=true", "edgeward.app=owned"]}
        ):
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True)
        for n in docker_client.networks.list(filters={"label": "edgeward.app=owned"}):
            with contextlib.suppress(docker.errors.APIError):
                n.remove()
