"""The enforcer under a failing runtime, and bad input from its users."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import docker

from tests.support.apps import app, sleeper
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine


def test_docker_engine_restart_is_reported_and_everything_converges_after(
    enforcer: EnforcerProc,
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    enforcer.apply(app("durable", sleeper("s", test_image, replicas=2)))
    enforcer.wait_running("durable.s.0", "durable.s.1")

    assert engine.proc is not None
    engine.proc.terminate()
    engine.proc.wait(60)
    deadline = time.monotonic() + 15
    while True:
        check = enforcer.cli("status", "--check")
        if check.returncode == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert check.returncode == 1
    assert "unavailable" in (check.stdout + check.stderr).lower(), (check.stdout, check.stderr)
    ps = enforcer.ps()
    assert {ps[i]["state"] for i in ("durable.s.0", "durable.s.1")} == {"unknown"}

    engine.proc = None
    engine.start()
    enforcer.wait_running("durable.s.0", "durable.s.1", timeout=30)
    assert enforcer.cli("status", "--check").returncode == 0
    names = {
        c.name for c in docker_client.containers.list(filters={"label": "edgeward.app=durable"})
    }
    assert names == {"ew.durable.s.0.main", "ew.durable.s.1.main"}, enforcer.log_tail(6000)


def test_bad_input_gets_one_clear_error_and_disturbs_nothing(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str, tmp_path: object
) -> None:
    enforcer.apply(app("steady", sleeper("s", test_image)))
    enforcer.wait_running("steady.s.0")
    before = docker_client.containers.get("ew.steady.s.0.main").attrs["State"]["StartedAt"]

    cases = {
        "name: x\nservices: [\n": "line",  # YAML syntax error names the position
        json.dumps({"name": "x", "version": "1", "services": [], "colour": "red"}): "colour",
        json.dumps(
            {"name": "x", "version": "1", "services": [{"name": "s", "containers": [
                {"name": "m", "image": "i", "stop-timeout": "10x"}]}]}
        ): 'services[0].containers[0].stop-timeout: "10x" is not a duration',
        json.dumps(
            {"name": "x", "version": "1", "services": [{"name": "s", "containers": [
                {"name": "m", "image": "i", "cmd": ["${NOPE}"]}]}]}
        ): "NOPE",
        json.dumps(
            {"name": "x", "version": "1", "services": [
                {"name": "s", "containers": [{"name": "m", "image": "i"}]},
                {"name": "s", "containers": [{"name": "m", "image": "i"}]}]}
        ): "duplicate",
    }  # fmt: skip
    for text, expected in cases.items():
        res = enforcer.cli("apply", "-f", "-", input=text)
        assert res.returncode == 1, (text, res.stdout)
        assert expected in res.stderr, (expected, res.stderr)
        assert "Traceback" not in res.stderr

    res = enforcer.cli("rm", "no-such-app")
    assert res.returncode == 1 and "no-such-app" in res.stderr and "Traceback" not in res.stderr
    res = enforcer.cli("logs", "no.such.0")
    assert res.returncode == 1 and "no.such.0" in res.stderr

    assert docker_client.containers.get("ew.steady.s.0.main").attrs["State"]["StartedAt"] == before
    assert set(enforcer.ps()) == {"steady.s.0"}

    enforcer.stop()
    res = enforcer.cli("ps")
    assert res.returncode == 1
    assert str(enforcer.socket) in res.stderr and "Traceback" not in res.stderr


def test_logs_and_events_and_metrics_come_from_the_real_daemon(
    enforcer: EnforcerProc, test_image: str
) -> None:
    from tests.support.apps import container, service

    talk = service(
        "t", container("main", test_image, "sh", "-c", "echo one; echo two; sleep 100000")
    )
    enforcer.apply(app("talk", talk))
    enforcer.wait_running("talk.t.0")
    deadline = time.monotonic() + 10
    while True:
        res = enforcer.cli("logs", "talk.t.0", "--tail", "1")
        if res.stdout.strip() == "two" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert res.returncode == 0 and res.stdout.strip() == "two"
    events = enforcer.cli("events").stdout
    assert "talk" in events
    from enforcer.cli.client import Client

    metrics = Client(enforcer.socket).metrics()
    assert 'edgeward_instances{state="running"} 1' in metrics


def test_the_cli_with_a_tenant_token_sees_and_touches_only_that_tenant(
    engine: DockerEngine, test_image: str
) -> None:
    root = Path(tempfile.mkdtemp(prefix="enf-", dir="/tmp"))
    tokens = root / "state" / "tenant-tokens"
    tokens.mkdir(parents=True)
    (tokens / "acme").write_text("acme-token-123\n")
    (root / "acme.token").write_text("acme-token-123\n")
    enf = EnforcerProc(root, engine.url)
    enf.start()
    try:
        enf.apply(app("ops", sleeper("s", test_image)))  # a site-local app: tenant system
        enf.wait_running("ops.s.0")
        as_acme = ("--token", f"@{root / 'acme.token'}")
        res = enf.cli(*as_acme, "ps", "-o", "json")
        assert res.returncode == 0, res.stderr
        assert "ops" not in res.stdout
        res = enf.cli(*as_acme, "rm", "ops")
        assert res.returncode == 1 and "does not exist" in res.stderr
        res = enf.cli(*as_acme, "logs", "ops.s.0")
        assert res.returncode == 1
        assert "ops.s.0" in enf.ps()  # untouched; the socket without a token sees everything
        res = enf.cli("--token", "wrong", "ps")
        assert res.returncode == 1 and "Traceback" not in res.stderr
    finally:
        enf.cli("rm", "ops")
        enf.stop()
        enf.remove_firewall()
        shutil.rmtree(root, ignore_errors=True)


def test_containers_get_the_hosts_stop_grace_and_log_caps(
    engine: DockerEngine, docker_client: docker.DockerClient, test_image: str
) -> None:
    root = Path(tempfile.mkdtemp(prefix="grace-", dir="/tmp"))
    enf = EnforcerProc(
        root,
        engine.url,
        extra_config='[runtime]\nstop-grace = "3s"\n[logs]\nmax-size = "1Mi"\nmax-files = 2\n',
    )
    enf.start()
    try:
        plain = {"name": "plain", "image": test_image, "cmd": ["sleep", "100000"]}
        timed = {"name": "timed", "image": test_image, "cmd": ["sleep", "100000"],
                 "stop-timeout": "1s"}  # fmt: skip
        enf.apply({"name": "grace", "version": "1",
                   "services": [{"name": "s", "containers": [plain, timed]}]})  # fmt: skip
        enf.wait_running("grace.s.0")
        stop = {
            name: docker_client.containers.get(f"ew.grace.s.0.{name}").attrs["Config"].get(
                "StopTimeout"
            )
            for name in ("plain", "timed")
        }
        assert stop == {"plain": 3, "timed": 1}  # no stop-timeout in the spec: stop-grace
        logging = docker_client.containers.get("ew.grace.s.0.plain").attrs["HostConfig"]
        assert logging["LogConfig"] == {
            "Type": "local",
            "Config": {"max-size": str(1024 * 1024), "max-file": "2"},
        }
        enf.cli("rm", "grace", "--purge")
    finally:
        enf.stop()
        enf.remove_firewall()
        enf.unmount_secrets()
        shutil.rmtree(root, ignore_errors=True)
