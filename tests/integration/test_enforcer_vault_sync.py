"""A vault from a real control to a container at a real enforcer: sealed in transit, files in
the container, rotation, remote unseal with control's key, revocation."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.support.apps import app, container, service
from tests.support.control import ControlProcess
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine

VALUE = "e2e-s3cr3t-NEVER-LEAK-71aa"
ROTATED = "e2e-rotated-NEVER-LEAK-03bd"


@pytest.fixture()
def site(control: ControlProcess, engine: DockerEngine) -> Iterator[EnforcerProc]:
    bundle = control.bundle("store-042", {"customer": "acme"})
    root = Path(tempfile.mkdtemp(prefix="vs-", dir="/tmp"))
    enf = EnforcerProc(root, engine.url, extra_config=f'[control]\nenrollment = "{bundle}"\n')
    enf.start()
    yield enf
    enf.stop()  # vision is control's: only control removes it, so the test clears it from Docker
    client = docker.DockerClient(base_url=engine.url)
    try:
        for c in client.containers.list(all=True, filters={"label": "edgeward.app=vision"}):
            c.remove(force=True, v=True)
        for n in client.networks.list(filters={"label": "edgeward.app=vision"}):
            n.remove()
    finally:
        client.close()
    enf.remove_firewall()
    enf.unmount_secrets()
    shutil.rmtree(root, ignore_errors=True)


def wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def cat(client: docker.DockerClient, name: str, path: str) -> str:
    code, out = client.containers.get(name).exec_run(["cat", path])
    return out.decode(errors="replace") if code == 0 else f"(exit {code})"


def stored_unseal(enf: EnforcerProc) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{enf.root / 'state' / 'enforcer.db'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT name, unseal FROM vaults").fetchall())
    finally:
        db.close()


def test_a_vault_from_control_reaches_the_container_rotates_goes_remote_and_is_revoked(
    control: ControlProcess,
    site: EnforcerProc,
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    def cli(*args: str) -> None:
        res = control.cli(*args)
        assert res.returncode == 0, res.stderr

    cli("vault", "create", "vision", "--distribute", "customer = acme")
    cli("secret", "put", "vision", "creds", f"api-key={VALUE}")
    spec = app(
        "vision",
        service(
            "det",
            container(
                "main", test_image, "sleep", "100000", mounts=[{"volume": "c", "path": "/s"}]
            ),
            volumes=[{"name": "c", "secret": {"vault": "vision", "secret": "creds"}}],
        ),
    )
    control.client().put("/v1/applications/vision/versions/1", spec)
    control.deploy(
        {"name": "vision-acme", "application": "vision", "version": "latest",
         "placement": {"match-site-labels": "customer = acme"}}
    )  # fmt: skip
    site.wait_running("vision.det.0", timeout=90)
    name = "ew.vision.det.0.main"
    assert cat(docker_client, name, "/s/api-key") == VALUE

    cli("secret", "put", "vision", "creds", f"api-key={ROTATED}")
    wait(lambda: cat(docker_client, name, "/s/api-key") == ROTATED, 30, "the rotated file")

    control.client().put("/v1/vaults/vision", {"distribute": "customer = acme", "unseal": "remote"})
    wait(lambda: stored_unseal(site) == {"vision": "remote"}, 30, "storage under control's key")
    assert site.ps()["vision.det.0"]["state"] == "running"

    cli("secret", "rm", "vision", "creds")
    ps = site.wait_ps(lambda ps: ps.get("vision.det.0", {}).get("state") == "pending", 30)
    assert ps["vision.det.0"]["reason"] == "secret vision/creds not available at this site"
    assert not (site.secrets_dir / "vision.det.0").exists()

    events = site.cli("events").stdout
    assert "vault.stored" in events and "vault.updated" in events
    for path in (site.root / "state").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert VALUE.encode() not in data and ROTATED.encode() not in data, path
    assert VALUE not in site.log_tail(10**7) and ROTATED not in site.log_tail(10**7)
