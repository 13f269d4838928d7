"""Desired instances: secrets in env and in files, hashes without secret text, tenant networks."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from enforcer.reconcile.instances import Context, DesiredInstance, SecretFile, desired_instance
from enforcer.shared.spec import parse_application

CTX = Context(site="store-1", host="host-a")
VALUE = "hunter2-very-secret"


def app(tenant: str = "acme", restart_on_change: bool = False, name: str = "vision") -> Any:
    secret: dict[str, Any] = {"vault": "v", "secret": "creds"}
    if restart_on_change:
        secret["restart-on-change"] = True
    doc = {
        "name": name,
        "version": "1",
        "services": [
            {
                "name": "det",
                "variables": [
                    {
                        "name": "KEY",
                        "value-from-secret": {"vault": "v", "secret": "creds", "key": "api-key"},
                    },
                    {"name": "AUTH", "value": "Bearer ${KEY}"},
                    {"name": "LEVEL", "value": "info"},
                ],
                "volumes": [{"name": "creds", "secret": secret}],
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "env": {"API_KEY": "${KEY}", "HEADER": "${AUTH}", "LOG": "${LEVEL}"},
                        "mounts": [{"volume": "creds", "path": "/run/secrets/creds"}],
                    },
                    {"name": "side", "image": "busybox"},
                ],
            }
        ],
    }
    return parse_application(doc, tenant=tenant)


def desired(values: dict[tuple[str, str, str], str], **kwargs: Any) -> DesiredInstance:
    a = app(**kwargs)
    return desired_instance(
        a,
        a.services[0],
        f"{a.name}.det.0",
        CTX,
        instances_dir="/var/lib/ew/instances",
        secrets=values,
        secrets_dir="/run/ew/secrets",
    )


SECRETS = {("v", "creds", "api-key"): VALUE, ("v", "creds", "user"): "vision"}


def test_secret_variables_reach_env_but_the_hash_input_holds_only_a_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d = desired(SECRETS)
    main = d.owner
    assert dict(main.env) == {"API_KEY": VALUE, "HEADER": f"Bearer {VALUE}", "LOG": "info"}
    assert main.secret_env == ("API_KEY", "HEADER")
    captured: list[bytes] = []
    real = hashlib.sha256

    def spy(data: bytes = b"") -> Any:
        captured.append(data)
        return real(data)

    monkeypatch.setattr(hashlib, "sha256", spy)
    first = main.config_hash("sha256:img")
    monkeypatch.undo()
    document = [c for c in captured if c.startswith(b"{")]  # the whole configuration
    assert document and all(VALUE.encode() not in c for c in document)
    # a new value changes the hash (the container is recreated with the new env)
    rotated = desired({**SECRETS, ("v", "creds", "api-key"): "other"})
    assert rotated.owner.config_hash("sha256:img") != first
    assert VALUE not in repr(d)  # nor in a repr that may reach a log


def test_secret_volume_files_are_one_per_key_under_the_instance_directory() -> None:
    d = desired(SECRETS)
    assert d.secret_files == (
        SecretFile("creds", "api-key", VALUE),
        SecretFile("creds", "user", "vision"),
    )
    assert d.secrets_dir == "/run/ew/secrets/vision.det.0"
    mount = d.owner.mounts[0]
    assert (mount.kind, mount.source, mount.target, mount.read_only) == (
        "bind",
        "/run/ew/secrets/vision.det.0/creds",
        "/run/secrets/creds",
        True,
    )
    assert VALUE not in repr(d.secret_files)


def test_keys_that_cannot_be_file_names_are_left_out() -> None:
    d = desired({**SECRETS, ("v", "creds", "../escape"): "x", ("v", "creds", ".hidden"): "y"})
    assert [f.name for f in d.secret_files] == ["api-key", "user"]


def test_rotated_files_restart_only_containers_that_ask_for_it() -> None:
    rotated = {**SECRETS, ("v", "creds", "user"): "someone-else"}  # not an env value
    plain_before, plain_after = desired(SECRETS), desired(rotated)
    assert plain_before.owner.config_hash("i") == plain_after.owner.config_hash("i")
    asked_before = desired(SECRETS, restart_on_change=True)
    asked_after = desired(rotated, restart_on_change=True)
    assert asked_before.owner.config_hash("i") != asked_after.owner.config_hash("i")
    # the container that does not mount the volume is not restarted
    side_before, side_after = asked_before.containers[1], asked_after.containers[1]
    assert side_before.config_hash("i") == side_after.config_hash("i")


def test_every_tenant_and_application_gets_its_own_network() -> None:
    a = desired(SECRETS, tenant="acme").network
    b = desired(SECRETS, tenant="globex").network
    c = desired(SECRETS, tenant="acme", name="other").network
    assert (a, b, c) == ("ew.acme.vision", "ew.globex.vision", "ew.acme.other")


def test_a_container_without_stop_timeout_gets_the_hosts_stop_grace() -> None:
    doc = {
        "name": "grace",
        "version": "1",
        "services": [
            {
                "name": "s",
                "containers": [
                    {"name": "plain", "image": "busybox"},
                    {"name": "timed", "image": "busybox", "stop-timeout": "2s"},
                ],
            }
        ],
    }
    a = parse_application(doc, tenant="acme")
    ctx = Context(site="store-1", host="host-a", stop_grace=25.0)
    d = desired_instance(a, a.services[0], "grace.s.0", ctx, instances_dir="/i")
    assert {c.name: c.stop_timeout for c in d.containers} == {"plain": 25.0, "timed": 2.0}
