"""`edge-enforcer enroll` against a running enforcer: the daemon enrolls and syncs at once, with
real control and a real enforcer process on a real dockerd."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from enforcer.cli.client import Client
from tests.support.apps import app, sleeper
from tests.support.control import ControlProcess
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine
from tests.support.processes import wait_for


@pytest.fixture()
def site(engine: DockerEngine, docker_client: docker.DockerClient) -> Iterator[EnforcerProc]:
    """A running enforcer that is not enrolled (no bundle in its configuration)."""
    root = Path(tempfile.mkdtemp(prefix="enr-", dir="/tmp"))
    enf = EnforcerProc(root, engine.url)
    enf.start()
    yield enf
    enf.stop()
    enf.remove_firewall()
    for c in docker_client.containers.list(all=True, filters={"label": "edgeward.app=shop"}):
        with contextlib.suppress(docker.errors.APIError):
            c.remove(force=True)
    for n in docker_client.networks.list(filters={"label": "edgeward.app=shop"}):
        with contextlib.suppress(docker.errors.APIError):
            n.remove()
    shutil.rmtree(root, ignore_errors=True)


def test_enrolling_a_running_enforcer_syncs_at_once_and_a_second_enroll_is_refused(
    control: ControlProcess, site: EnforcerProc, test_image: str
) -> None:
    pid = site.process().pid
    status = site.cli("status")
    assert "not enrolled" in status.stdout, status.stdout

    res = site.cli("enroll", control.bundle("store-77", {"customer": "acme"}))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"enrolled as site store-77 with control at {control.url}"

    # a deployment by label reaches the site with no restart of the daemon
    control.client().put("/v1/applications/shop/versions/1", app("shop", sleeper("s", test_image)))
    control.deploy(
        {"name": "shop-acme", "application": "shop", "version": "latest",
         "placement": {"match-site-labels": "customer = acme"}}
    )  # fmt: skip
    site.wait_running("shop.s.0", timeout=30)
    assert site.process().pid == pid

    link = Client(site.socket).site()["control"]
    assert link["enrolled"] is True and link["site"] == "store-77"
    wait_for(lambda: Client(site.socket).site()["control"]["state"] == "connected", 10, "link")
    status = site.cli("status")
    assert f"connected to {control.url}" in status.stdout, status.stdout

    # enrolling again is refused with one clear line, by the daemon and without it
    again = site.cli("enroll", control.bundle("store-78"))
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"edge-enforcer: error: this site is enrolled already, as store-77 with control at "
        f"{control.url}"
    ]
    site.stop()
    offline = site.cli("enroll", control.bundle("store-79"))
    assert offline.returncode == 1
    assert offline.stderr.strip().splitlines() == again.stderr.strip().splitlines()


def test_after_a_control_outage_a_relabel_reaches_the_site_within_seconds_of_its_return(
    control: ControlProcess, site: EnforcerProc, test_image: str
) -> None:
    assert site.cli("enroll", control.bundle("store-88", {"customer": "other"})).returncode == 0
    control.client().put("/v1/applications/shop/versions/1", app("shop", sleeper("s", test_image)))
    control.deploy(
        {"name": "shop-acme", "application": "shop", "version": "latest",
         "placement": {"match-site-labels": "customer = acme"}}
    )  # fmt: skip
    wait_for(lambda: Client(site.socket).site()["control"]["state"] == "connected", 10, "link")

    control.stop()
    wait_for(lambda: Client(site.socket).site()["control"]["state"] != "connected", 10, "outage")
    time.sleep(10)  # the site keeps retrying, backing off, for the length of the outage
    control.start()  # same port, same state
    back = time.monotonic()
    control.client().patch("/v1/sites/store-88", {"labels": {"customer": "acme"}})
    site.wait_running("shop.s.0", timeout=30)
    assert time.monotonic() - back < 8.0, "the site took too long to resync after the outage"
