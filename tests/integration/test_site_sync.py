"""Control and real enforcers, each with its own dockerd, over real mutual TLS."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.support.apps import app, sleeper
from tests.support.control import ControlProcess
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine


@pytest.fixture(scope="module")
def second_engine() -> Iterator[DockerEngine]:
    root = Path(tempfile.mkdtemp(prefix="ew2-", dir="/tmp"))
    eng = DockerEngine(root)
    eng.start()
    yield eng
    eng.stop()
    shutil.rmtree(root, ignore_errors=True)


def enrolled(control: ControlProcess, engine: DockerEngine, site: str, labels: dict[str, str]) -> EnforcerProc:
    bundle = control.bundle(site, labels)
    root = Path(tempfile.mkdtemp(prefix=f"{site}-", dir="/tmp"))
    enf = EnforcerProc(root, engine.url, extra_config=f'[control]\nenrollment = "{bundle}"\n')
    enf.start()
    return enf


def running_apps(client: docker.DockerClient) -> set[str]:
    # sparse: the list's own labels, no inspect per container (one may go between the two)
    listed = client.containers.list(filters={"label": "edgeward.managed=true"}, sparse=True)
    return {c.attrs["Labels"]["edgeward.app"] for c in listed}


def wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_deploy_by_labels_relabel_moves_it_and_sites_ride_out_a_control_outage(
    control: ControlProcess,
    engine: DockerEngine,
    second_engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    a = enrolled(control, engine, "store-a", {"customer": "acme"})
    b = enrolled(control, second_engine, "store-b", {"customer": "other"})
    client_b = docker.DockerClient(base_url=second_engine.url)
    try:
        control.client().put("/v1/applications/shop/versions/1", app("shop", sleeper("s", test_image)))
        control.deploy(
            {"name": "shop-acme", "application": "shop", "version": "latest",
             "placement": {"match-site-labels": "customer = acme"}}
        )  # fmt: skip
        wait(lambda: running_apps(docker_client) == {"shop"}, 30, "shop on store-a")
        assert running_apps(client_b) == set()

        # re-labelling moves the application
        assert control.cli("site", "label", "store-b", "customer=acme", "--url", control.url,
                           "--token", control.admin_token, "--ca", str(control.state_dir / "ca.pem")).returncode == 0  # fmt: skip
        assert control.cli("site", "label", "store-a", "customer-", "--url", control.url,
                           "--token", control.admin_token, "--ca", str(control.state_dir / "ca.pem")).returncode == 0  # fmt: skip
        wait(lambda: running_apps(client_b) == {"shop"}, 30, "shop on store-b")
        wait(lambda: running_apps(docker_client) == set(), 30, "shop gone from store-a")

        # control goes away: nothing at the sites is disturbed
        def containers_b() -> dict[str, str]:
            return {c.id: c.attrs["State"]["StartedAt"] for c in client_b.containers.list()}

        before = containers_b()
        control.stop(kill=True)
        time.sleep(3)
        assert containers_b() == before
        status = json.loads(b.cli("status", "-o", "json").stdout)
        assert "control" in json.dumps(status)

        # a site restarted while control is down comes back with all its applications
        b.stop(signal.SIGKILL)
        b.start()
        b.wait_running("shop.s.0")
        assert containers_b() == before

        # control is back: the sites reconnect and pick up what changed meanwhile
        control.start()
        control.client().put("/v1/applications/shop/versions/2", app("shop", sleeper("s", test_image), sleeper("t", test_image), version="2"))
        wait(lambda: "shop.t.0" in b.ps() and b.ps()["shop.t.0"]["state"] == "running", 60, "v2 at store-b")
        status = control.client().get("/v1/deployments/shop-acme/status")
        assert "store-b" in json.dumps(status)
    finally:
        for enf in (a, b):
            enf.cli("rm", "shop")
            enf.stop()
            enf.remove_firewall()
            shutil.rmtree(enf.root, ignore_errors=True)
        for c in client_b.containers.list(all=True, filters={"label": "edgeward.managed=true"}):
            c.remove(force=True)
        client_b.close()
