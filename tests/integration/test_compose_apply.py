"""Compose files as they are, converted and running at a real site: applied at a real enforcer
with its private dockerd, and pushed through a real control to an enrolled site, the web page
answering through the published port (docs/compose.md)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
import yaml

from tests.support.control import ControlProcess
from tests.support.devices import loop_device
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine
from tests.support.processes import free_port

# A web shop: a web front end (busybox httpd) with a health check, a "database" serving what it
# keeps on a named volume, and a worker that reaches the database by its service name. YAML
# anchors, merge keys, a .env file and variables from the environment, as teams write them.
SHOP = """
name: shop
x-defaults: &defaults
  image: ${IMAGE}
  restart: unless-stopped
  stop_grace_period: 1s
services:
  web:
    <<: *defaults
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["${WEB_PORT}:8080"]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 1s
      retries: 2
    depends_on: [db]
  db:
    <<: *defaults
    command: sh -c 'echo "$$DB_NAME" > /data/name; exec httpd -f -p 5432 -h /data'
    environment: {DB_NAME: "${DB_NAME:-shop-db}"}
    volumes: ["db-data:/data"]
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 64m}
  worker:
    <<: *defaults
    command: ["sleep", "100000"]
    environment: [QUEUE=orders]
    labels: {team: shop}
volumes:
  db-data:
"""

# The same application, broken three ways: nothing of it may reach the running one.
BROKEN = SHOP.replace('volumes: ["db-data:/data"]', 'volumes: ["./data:/data"]').replace(
    "  worker:\n    <<: *defaults\n", "  worker:\n    build: ./worker\n"
)


def get(port: int, path: str = "/") -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            chunks = []
            while chunk := s.recv(4096):  # HTTP/1.0: the server closes after the body
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError as exc:
        return f"error: {exc}"


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def write(directory: Path, text: str, dotenv: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".env").write_text(dotenv)
    path = directory / "compose.yaml"
    path.write_text(text)
    return path


def test_a_compose_web_shop_runs_at_a_site_and_a_broken_one_changes_nothing(
    enforcer: EnforcerProc,
    docker_client: docker.DockerClient,
    test_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv("IMAGE", test_image)
    path = write(tmp_path / "shop", SHOP, dotenv=f"WEB_PORT={port}\nDB_NAME=orders-db\n")

    res = enforcer.cli("apply", "-f", str(path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "application shop created"
    assert "warning: services.worker.labels: not supported, ignored" in res.stderr

    enforcer.wait_ps(
        lambda ps: all(
            ps.get(i, {}).get("state") == "running" and ps[i].get("ready")
            for i in ("shop.web.0", "shop.db.0", "shop.worker.0")
        ),
        timeout=30,
    )
    assert "edgeward test image" in get(port)  # through the published port
    # the worker reaches the database by its service name; the database kept .env's value
    code, out = docker_client.containers.get("ew.shop.worker.0.main").exec_run(
        ["wget", "-q", "-O-", "http://db:5432/name"]
    )
    assert code == 0 and out.decode().strip() == "orders-db"
    db = docker_client.containers.get("ew.shop.db.0.main")
    assert db.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert db.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert any(m["Type"] == "volume" and m["Destination"] == "/data" for m in db.attrs["Mounts"])
    running = {
        c.name: c.id for c in docker_client.containers.list(filters={"label": "edgeward.app=shop"})
    }

    # a bind mount and a build-only service: refused, every problem named, nothing changes
    broken = write(tmp_path / "broken", BROKEN, dotenv=f"WEB_PORT={port}\n")
    res = enforcer.cli("apply", "-f", str(broken))
    assert res.returncode == 1
    assert "the Compose file cannot be converted" in res.stderr
    assert 'services.db.volumes[0]: "./data" is a bind mount of a host path' in res.stderr
    assert "services.worker: an image is required (it only has build)" in res.stderr
    time.sleep(1)
    after = {
        c.name: c.id for c in docker_client.containers.list(filters={"label": "edgeward.app=shop"})
    }
    assert after == running
    assert "edgeward test image" in get(port)


# An API with a health check, resources and two replicas, as the monitored example has it.
MONITORED = """
services:
  api:
    image: ${IMAGE}
    entrypoint: ["httpd"]
    command: -f -p 8080 -h /www
    ports:
      - target: 8080
        published: ${API_PORT}
    healthcheck:
      test: wget -q -O /dev/null http://127.0.0.1:8080/
      interval: 1s
      timeout: 1s
      retries: 3
      start_period: 5s
    deploy:
      mode: global
      resources:
        limits: {cpus: "0.25", memory: 32m}
      restart_policy: {condition: any}
    stop_grace_period: 1s
"""


def test_a_compose_file_pushed_through_control_runs_at_an_enrolled_site(
    control: ControlProcess,
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_image: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    path = write(tmp_path / "Monitored_API", MONITORED)
    env = {"IMAGE": test_image, "API_PORT": str(port), **control.cli_env()}
    # the converted spec, as convert prints it, is what push sends
    converted = control.cli("app", "convert", "-f", str(path), env=env)
    assert converted.returncode == 0, converted.stderr
    spec = yaml.safe_load(converted.stdout)
    assert spec["name"] == "monitored-api"  # from the directory, as Compose names projects

    pushed = control.cli("app", "push", "-f", str(path), env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip() == f"application monitored-api version {spec['version']} pushed"
    again = control.cli("app", "push", "-f", str(path), env=env)
    assert again.stdout.strip().endswith("unchanged (already pushed)")
    shown = control.client().get(f"/v1/applications/monitored-api/versions/{spec['version']}")
    assert shown["spec"]["services"][0]["mode"] == "one-per-matching-host"

    # a broken file pushes nothing
    bad = write(
        tmp_path / "bad", MONITORED.replace("mode: global", "mode: global\n      replicas: 2")
    )
    refused = control.cli("app", "push", "-f", str(bad), "--name", "monitored-api", env=env)
    assert refused.returncode == 1
    assert 'services.api.deploy.replicas: cannot be set with mode "global"' in refused.stderr
    versions = control.client().get("/v1/applications")["applications"][0]["versions"]
    assert versions == [spec["version"]]

    bundle = control.bundle("store-1", {"customer": "acme"})
    site = EnforcerProc(
        Path(tempfile.mkdtemp(prefix="cmp-", dir="/tmp")),
        engine.url,
        extra_config=f'[control]\nenrollment = "{bundle}"\n',
    )
    site.start()
    try:
        control.deploy(
            {
                "name": "api-acme",
                "application": "monitored-api",
                "version": "latest",
                "placement": {"match-site-labels": "customer = acme"},
            }
        )
        wait(lambda: "edgeward test image" in get(port), 40, "the API through its published port")
        container = docker_client.containers.get(
            next(
                c.name
                for c in docker_client.containers.list(
                    filters={"label": "edgeward.app=monitored-api"}
                )
            )
        )
        assert container.attrs["HostConfig"]["Memory"] == 32 * 1024 * 1024
    finally:
        site.cli("rm", "monitored-api", "--purge")
        site.stop()
        site.remove_firewall()
        shutil.rmtree(site.root, ignore_errors=True)


# A reader of a device the host's [[devices.rule]] labels, and a camera service on a host
# without a camera.
DEVICES = """
name: line
x-edgeward:
  devices: {"/dev/loop*": scratch-disk}
services:
  reader:
    image: ${IMAGE}
    command: ["sleep", "100000"]
    devices: ["${NODE}:${NODE}"]
    stop_grace_period: 1s
  camera:
    image: ${IMAGE}
    command: ["sleep", "100000"]
    devices: ["/dev/video0"]
    stop_grace_period: 1s
"""


def test_compose_devices_reach_the_container_by_their_label(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with loop_device() as loop:
        rule = f'[[devices.rule]]\nlabel = "scratch-disk"\nmatch = {{ DEVNAME = "{loop.node}" }}\n'
        site = EnforcerProc(
            Path(tempfile.mkdtemp(prefix="cmp-", dir="/tmp")), engine.url, extra_config=rule
        )
        site.start()
        try:
            monkeypatch.setenv("IMAGE", test_image)
            monkeypatch.setenv("NODE", loop.node)
            res = site.cli("apply", "-f", str(write(tmp_path / "line", DEVICES)))
            assert res.returncode == 0, res.stderr
            site.wait_running("line.reader.0")
            code, out = docker_client.containers.get("ew.line.reader.0.main").exec_run(
                ["stat", "-c", "%F", loop.node]
            )
            assert code == 0 and out.decode().strip() == "block special file"
            ps = site.wait_ps(lambda p: p.get("line.camera.0", {}).get("state") == "pending")
            assert "no device labelled camera" in ps["line.camera.0"]["reason"]
        finally:
            site.cli("rm", "line")
            site.stop()
            site.remove_firewall()
            shutil.rmtree(site.root, ignore_errors=True)
