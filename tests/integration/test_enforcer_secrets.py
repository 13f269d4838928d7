"""Vaults at a site with the real engine: secret files on a tmpfs, rotation, revocation, waiting
for a secret, values that never leak, and tenants kept apart."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from enforcer.cli.client import Client, ClientError
from enforcer.secrets.files import mount_point_of
from enforcer.shared.sealing import new_vault_key
from tests.support.apps import app, container, service, sleeper, web
from tests.support.engines import DockerEngine
from tests.support.livedaemon import LiveDaemon

VALUE = "s3cr3t-NEVER-LEAK-4f1c2a"  # a file secret
ENV_VALUE = "env-s3cr3t-NEVER-LEAK-9b7d"  # a secret variable
TOKENS = {"acme": "acme-token-0123456789", "globex": "globex-token-0123456789"}


@pytest.fixture()
def live(engine: DockerEngine) -> Iterator[LiveDaemon]:
    root = Path(tempfile.mkdtemp(prefix="sec-", dir="/tmp"))
    d = LiveDaemon(root, engine.url)
    tokens = root / "state" / "tenant-tokens"
    tokens.mkdir(parents=True)
    for tenant, token in TOKENS.items():
        (tokens / tenant).write_text(token + "\n")
    d.start()
    yield d
    try:
        d.control_desired(1_000_000, [])  # control's applications go as control removes them
        local = {a["name"] for a in Client(d.socket).applications()}
        d.wait_ps(lambda ps: {i["app"] for i in ps.values()} <= local)
        for name in sorted(local):
            d.cli("rm", name, "--purge")
    finally:
        d.stop()
        d.remove_firewall()
        d.unmount_secrets()
        shutil.rmtree(root, ignore_errors=True)


def sh(client: docker.DockerClient, name: str, script: str) -> tuple[int, str]:
    code, out = client.containers.get(name).exec_run(["sh", "-c", script])
    return code, out.decode(errors="replace")


def wait_until(check: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached in {timeout}s: {what}")


def creds_app(
    image: str, *, restart_on_change: bool = False, name: str = "vision"
) -> dict[str, Any]:
    secret: dict[str, Any] = {"vault": "vision", "secret": "creds"}
    if restart_on_change:
        secret["restart-on-change"] = True
    return app(
        name,
        service(
            "det",
            container(
                "main",
                image,
                "sleep",
                "100000",
                mounts=[{"volume": "creds", "path": "/run/secrets/creds"}],
            ),
            volumes=[{"name": "creds", "secret": secret}],
        ),
    )


def started(client: docker.DockerClient, name: str) -> tuple[str, str]:
    c = client.containers.get(name)
    return c.id, c.attrs["State"]["StartedAt"]


def test_secret_files_are_read_only_0400_on_a_tmpfs_and_rotate_in_place_until_revoked(
    live: LiveDaemon, docker_client: docker.DockerClient, test_image: str
) -> None:
    live.apply_vaults(
        [live.sealed("vision", 1, {"creds": {"api-key": VALUE, "user": "vision"}}, "system")]
    )
    live.apply(creds_app(test_image))
    live.wait_running("vision.det.0", timeout=60)
    name = "ew.vision.det.0.main"
    assert sh(docker_client, name, "cat /run/secrets/creds/api-key") == (0, VALUE)
    code, out = sh(docker_client, name, "stat -c '%a %n' /run/secrets/creds /run/secrets/creds/*")
    assert out.split("\n")[:3] == [
        "500 /run/secrets/creds",
        "400 /run/secrets/creds/api-key",
        "400 /run/secrets/creds/user",
    ]
    code, _ = sh(docker_client, name, "echo x > /run/secrets/creds/api-key")
    assert code != 0  # read-only bind mount
    host_dir = live.secrets_dir / "vision.det.0" / "creds"
    assert mount_point_of(host_dir.resolve(), Path("/proc/mounts").read_text())[1] == "tmpfs"
    before = started(docker_client, name)

    live.apply_vaults([live.sealed("vision", 2, {"creds": {"api-key": "rotated"}}, "system")])
    wait_until(
        lambda: sh(docker_client, name, "cat /run/secrets/creds/api-key")[1] == "rotated",
        what="the rotated file shows in the running container",
    )
    assert sh(docker_client, name, "ls /run/secrets/creds")[1].split() == ["api-key"]
    assert started(docker_client, name) == before  # not restarted: the spec did not ask

    live.apply_vaults([])  # revoked (or no longer distributed here)
    ps = live.wait_ps(lambda ps: ps.get("vision.det.0", {}).get("state") == "pending")
    assert ps["vision.det.0"]["reason"] == "secret vision/creds not available at this site"
    assert not (live.secrets_dir / "vision.det.0").exists()
    wait_until(lambda: not docker_client.containers.list(all=True, filters={"name": name}))


def test_restart_on_change_restarts_the_container_with_the_new_files(
    live: LiveDaemon, docker_client: docker.DockerClient, test_image: str
) -> None:
    live.apply_vaults([live.sealed("vision", 1, {"creds": {"api-key": VALUE}}, "system")])
    live.apply(creds_app(test_image, restart_on_change=True))
    live.wait_running("vision.det.0", timeout=60)
    name = "ew.vision.det.0.main"
    before = started(docker_client, name)
    live.apply_vaults([live.sealed("vision", 2, {"creds": {"api-key": "rotated"}}, "system")])

    def restarted() -> bool:
        try:
            return started(docker_client, name) != before
        except docker.errors.NotFound:
            return False

    wait_until(restarted, what="the container restarted after the rotation")
    live.wait_running("vision.det.0")
    assert sh(docker_client, name, "cat /run/secrets/creds/api-key") == (0, "rotated")


def env_app(image: str) -> dict[str, Any]:
    key = {"vault": "vision", "secret": "creds", "key": "token"}
    return app(
        "envs",
        service(
            "api",
            container("main", image, "sleep", "100000", env={"TOKEN": "${TOKEN}"}),
            variables=[{"name": "TOKEN", "value-from-secret": key}],
        ),
        sleeper("plain", image),
    )


def test_an_instance_waits_pending_for_its_secret_and_starts_when_it_arrives(
    live: LiveDaemon, docker_client: docker.DockerClient, test_image: str
) -> None:
    live.apply(env_app(test_image))
    ps = live.wait_running("envs.plain.0", timeout=60)  # the rest of the app runs
    assert ps["envs.api.0"]["state"] == "pending"
    assert ps["envs.api.0"]["reason"] == "secret vision/creds not available at this site"
    live.apply_vaults([live.sealed("vision", 1, {"creds": {"token": ENV_VALUE}}, "system")])
    live.wait_running("envs.api.0")
    assert sh(docker_client, "ew.envs.api.0.main", 'printf %s "$TOKEN"') == (0, ENV_VALUE)


def test_with_remote_unseal_instances_wait_for_the_key_from_control(
    live: LiveDaemon, docker_client: docker.DockerClient, test_image: str
) -> None:
    live.apply_vaults(
        [live.sealed("vision", 1, {"creds": {"api-key": VALUE}}, "system")], unseal="remote"
    )
    live.apply(app("both", creds_app(test_image)["services"][0], sleeper("plain", test_image)))
    ps = live.wait_running("both.plain.0", timeout=60)
    assert ps["both.det.0"]["reason"] == "waiting for the vault key from control"
    assert not (live.state_dir / "site" / "vault.key").exists()

    key = new_vault_key()
    live.serve_vault_key(key)
    live.wait_running("both.det.0")
    name = "ew.both.det.0.main"
    assert sh(docker_client, name, "cat /run/secrets/creds/api-key") == (0, VALUE)
    assert not (live.state_dir / "site" / "vault.key").exists()

    # the enforcer restarts while control is away: what runs is left running, untouched
    before = started(docker_client, name)
    live.stop()
    live.start()
    ps = live.wait_ps(lambda ps: ps.get("both.plain.0", {}).get("state") == "running")
    assert ps["both.det.0"]["reason"] == "waiting for the vault key from control"
    time.sleep(2)  # a few reconcile passes
    assert started(docker_client, name) == before
    assert sh(docker_client, name, "cat /run/secrets/creds/api-key") == (0, VALUE)
    live.serve_vault_key(key)  # control is back
    live.wait_running("both.det.0")
    assert started(docker_client, name) == before  # the same secret: not even restarted


def test_secret_values_never_appear_outside_the_container(
    live: LiveDaemon, docker_client: docker.DockerClient, test_image: str
) -> None:
    vaults = [live.sealed("vision", 1, {"creds": {"api-key": VALUE, "token": ENV_VALUE}}, "system")]
    tampered = live.sealed("vision", 2, {"creds": {"api-key": VALUE + "2"}}, "system")
    raw = bytearray(base64.b64decode(tampered["sealed"]["ciphertext"]))
    raw[0] ^= 1
    tampered["sealed"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    live.apply_vaults(vaults)
    live.apply(creds_app(test_image))
    live.apply(env_app(test_image))
    live.wait_running("vision.det.0", "envs.api.0", timeout=60)
    live.apply_vaults([tampered])  # refused: an event names the vault, the old version stays
    live.apply_vaults(vaults)
    inside = "ew.vision.det.0.main"
    assert sh(docker_client, inside, "cat /run/secrets/creds/api-key") == (0, VALUE)
    assert sh(docker_client, inside, "stat -c %a /run/secrets/creds/api-key") == (0, "400\n")

    seen: dict[str, str] = {}
    for args in (("ps", "-o", "json"), ("events",), ("status",), ("logs", "envs.api.0")):
        res = live.cli(*args)
        assert res.returncode == 0, res.stderr
        seen[" ".join(args)] = res.stdout + res.stderr
    events = seen["events"]
    assert "vault.rejected" in events and "vault vision refused" in events
    client = Client(live.socket)
    seen["api"] = json.dumps(
        [client.applications(), client.instances(), list(client.events()), client.site()]
    )
    seen["inspect"] = json.dumps(docker_client.api.inspect_container(inside))
    seen["labels"] = json.dumps([c.labels for c in docker_client.containers.list(all=True)])
    seen["log"] = live.log_path.read_text(errors="replace")
    assert "DEBUG" in seen["log"]  # the log was written at its most talkative
    for path in sorted(live.state_dir.rglob("*")):
        if path.is_file():
            seen[str(path)] = path.read_bytes().decode("latin-1")
    assert any("enforcer.db" in name for name in seen)
    for where, text in seen.items():
        assert VALUE not in text, f"the file secret leaked into {where}"
        if where != "inspect":  # a secret variable is in the container's env, by request
            assert ENV_VALUE not in text, f"the secret variable leaked into {where}"


def test_tenants_are_kept_apart_on_the_network_the_api_and_in_their_vaults(
    live: LiveDaemon, docker_client: docker.DockerClient, test_image: str
) -> None:
    reader = service(
        "reader",
        container("main", test_image, "sleep", "100000", mounts=[{"volume": "c", "path": "/c"}]),
        volumes=[{"name": "c", "secret": {"vault": "shop-secrets", "secret": "db"}}],
    )
    shop = app(
        "shop",
        web("api", test_image),
        sleeper("worker", test_image, network={"outbound": "allow"}),
        reader,
    )
    ledger = app("ledger", sleeper("probe", test_image, network={"outbound": "allow"}), reader)
    live.control_desired(
        1,
        [
            {"name": "shop", "tenant": "acme", "spec": shop},
            {"name": "ledger", "tenant": "globex", "spec": ledger},
        ],
        vaults=[live.sealed("shop-secrets", 1, {"db": {"password": VALUE}}, "acme")],
    )
    ps = live.wait_running(
        "shop.api.0", "shop.worker.0", "shop.reader.0", "ledger.probe.0", timeout=60
    )
    # acme's vault serves acme's application; globex is told it is not here
    assert sh(docker_client, "ew.shop.reader.0.main", "cat /c/password") == (0, VALUE)
    assert ps["ledger.reader.0"]["reason"] == "secret shop-secrets/db not available at this site"

    nets = {n.name for n in docker_client.networks.list(filters={"label": "edgeward.managed=true"})}
    assert {"ew.acme.shop", "ew.globex.ledger"} <= nets
    shop_ip = docker_client.containers.get("ew.shop.api.0.main").attrs["NetworkSettings"][
        "Networks"
    ]["ew.acme.shop"]["IPAddress"]
    get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} 8080"
    _, out = sh(docker_client, "ew.shop.worker.0.main", get.format("api"))
    assert "200 OK" in out  # within the tenant's application: reachable
    _, out = sh(docker_client, "ew.shop.worker.0.main", get.format(shop_ip))
    assert "200 OK" in out
    _, out = sh(docker_client, "ew.ledger.probe.0.main", get.format(shop_ip))
    assert "200 OK" not in out, "another tenant's container reached acme's service"
    _, out = sh(docker_client, "ew.ledger.probe.0.main", get.format("api"))
    assert "200 OK" not in out

    acme = Client(live.socket, token=TOKENS["acme"])
    assert sorted(i["id"] for i in acme.instances()) == [
        "shop.api.0",
        "shop.reader.0",
        "shop.worker.0",
    ]
    assert [a["name"] for a in acme.applications()] == ["shop"]
    with pytest.raises(ClientError, match="does not exist"):
        acme.application("ledger")
    with pytest.raises(ClientError, match="does not exist"):
        list(acme.logs("ledger.probe.0"))
    events = list(acme.events())
    assert events and all(e.get("tenant") in ("acme", "") for e in events)
    assert not any("ledger" in e["message"] for e in events)
    globex = Client(live.socket, token=TOKENS["globex"])
    assert sorted(i["id"] for i in globex.instances()) == ["ledger.probe.0", "ledger.reader.0"]


def test_an_offline_reboot_with_local_unseal_starts_everything_again(
    live: LiveDaemon, docker_client: docker.DockerClient, test_image: str
) -> None:
    live.apply_vaults([live.sealed("vision", 1, {"creds": {"api-key": VALUE}}, "system")])
    live.apply(app("both", creds_app(test_image)["services"][0], sleeper("plain", test_image)))
    live.wait_running("both.det.0", "both.plain.0")
    assert (live.state_dir / "site" / "vault.key").exists()  # local unseal: the key is on disk

    # a reboot with no control: the enforcer and every container stop, the tmpfs is gone
    live.stop()
    for c in docker_client.containers.list(filters={"label": "edgeward.app=both"}):
        c.stop(timeout=1)
    live.unmount_secrets()
    assert not any(live.secrets_dir.rglob("api-key"))

    live.start()  # control never answers: nothing was fetched from it
    live.wait_running("both.det.0", "both.plain.0", timeout=60)
    assert sh(docker_client, "ew.both.det.0.main", "cat /run/secrets/creds/api-key") == (0, VALUE)


def test_a_site_local_application_cannot_read_a_tenants_vault(
    live: LiveDaemon, docker_client: docker.DockerClient, test_image: str
) -> None:
    live.apply_vaults([live.sealed("vision", 1, {"creds": {"api-key": VALUE}}, "acme")])
    live.apply(creds_app(test_image, name="local"))  # site-local: the site's system tenant
    ps = live.wait_ps(lambda ps: ps.get("local.det.0", {}).get("state") == "pending")
    assert ps["local.det.0"]["reason"] == "secret vision/creds not available at this site"
    # acme's own application reads it, on the same site at the same time
    acme_app = creds_app(test_image, name="shop")
    live.control_desired(1, [{"name": "shop", "tenant": "acme", "spec": acme_app}])
    live.wait_running("shop.det.0", timeout=60)
    assert sh(docker_client, "ew.shop.det.0.main", "cat /run/secrets/creds/api-key") == (0, VALUE)
    assert live.ps()["local.det.0"]["state"] == "pending"
    assert not docker_client.containers.list(all=True, filters={"label": "edgeward.app=local"})
