"""Runtime faults: stalled pulls, hung probes, engine outages, crash loops across restarts."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.support.apps import app, container, service, sleeper
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine


class StalledRegistry:
    """A registry on loopback that answers the engine's ping, then never sends a manifest."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            first = conn.recv(4096)
            if first[:1] == b"\x16":  # TLS first: refuse, the engine falls back to HTTP
                conn.close()
                return
            line = first.split(b"\r\n", 1)[0].decode(errors="replace")
            self.requests.append(line)
            if line.startswith("GET /v2/ "):
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nDocker-Distribution-API-Version: registry/2.0\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                )
                # keep-alive: the next request on this connection stalls as well
            self.held.append(conn)  # never answered, never closed (until the end)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture()
def stalled_registry() -> Iterator[StalledRegistry]:
    reg = StalledRegistry()
    yield reg
    reg.close()


@pytest.fixture()
def tuned_enforcer(engine: DockerEngine) -> Iterator[EnforcerProc]:
    """An enforcer with two Docker call slots, a 2 s pull-stall timeout, and a first retry
    after 3 s (so that `ps`, a CLI call each time, sees the failed pull between two tries)."""
    root = Path(tempfile.mkdtemp(prefix="enf-", dir="/tmp"))
    proc = EnforcerProc(root, engine.url)
    proc.write_config()
    text = proc.config_path.read_text()
    text = text.replace("[docker]\n", '[docker]\npull-stall-timeout = "2s"\n', 1)
    text = text.replace("[reconcile]\n", "[reconcile]\ndocker-parallelism = 2\n", 1)
    text = text.replace('initial-delay = "200ms"', 'initial-delay = "3s"', 1)
    proc.config_path.write_text(text)
    proc.start()
    yield proc
    for name in proc.app_names():
        proc.cli("rm", name)
    proc.stop()
    proc.remove_firewall()
    proc.unmount_secrets()
    shutil.rmtree(root, ignore_errors=True)


def _events(enforcer: EnforcerProc, kind: str) -> list[dict[str, object]]:
    res = enforcer.cli("events", "-o", "json")
    assert res.returncode == 0, res.stderr
    out = res.stdout.strip()
    items = json.loads(out) if out.startswith("[") else [json.loads(x) for x in out.splitlines()]
    return [e for e in items if e["kind"] == kind]


def test_a_stalled_pull_is_shown_reported_retried_and_holds_no_docker_call_slot(
    tuned_enforcer: EnforcerProc,
    stalled_registry: StalledRegistry,
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    enforcer = tuned_enforcer
    docker_client.images.pull(test_image)
    stuck = [
        sleeper(f"s{i}", f"127.0.0.1:{stalled_registry.port}/edgeward/stuck:{i}") for i in range(3)
    ]
    enforcer.apply(app("stuck", *stuck))
    pulling = enforcer.wait_ps(
        lambda p: p.get("stuck.s0.0", {}).get("state") == "pulling", timeout=10
    )
    assert "pulling" in pulling["stuck.s0.0"]["reason"]
    # the engine's call slots are free for everything else meanwhile
    enforcer.apply(app("calm", sleeper("c", test_image)))
    enforcer.wait_running("calm.c.0", timeout=15)

    failed = enforcer.wait_ps(
        lambda p: p["stuck.s0.0"]["state"] == "image-pull-failed", timeout=15
    )["stuck.s0.0"]
    assert "stalled" in failed["reason"], failed
    assert failed["next_retry"] is not None
    enforcer.wait_ps(  # retried with backoff: stalled and reported again
        lambda _: sum(1 for e in _events(enforcer, "image.pull-stalled")
                      if e["instance"] == "stuck.s0.0") >= 2,
        timeout=20,
    )  # fmt: skip


def test_an_exec_probe_that_times_out_is_ended(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    hung = {"readiness": {"exec": ["sleep", "30"], "period": "200ms", "timeout": "300ms"}}
    enforcer.apply(app("hung", service("h", container("main", test_image, "sleep", "100000",
                                                       probes=hung))))  # fmt: skip
    enforcer.wait_ps(lambda p: p.get("hung.h.0", {}).get("state") in ("starting", "running"))
    time.sleep(3)  # a dozen attempts, each timed out
    top = docker_client.containers.get("ew.hung.h.0.main").top()
    left = [p for p in top["Processes"] if "sleep 30" in " ".join(p)]
    assert len(left) <= 1, top["Processes"]
    assert enforcer.ps()["hung.h.0"]["ready"] is False


def test_crash_loop_backoff_survives_an_enforcer_restart(
    enforcer: EnforcerProc, test_image: str
) -> None:
    enforcer.apply(app("loop", service("c", container("main", test_image, "sh", "-c", "exit 3"))))
    # 0, 0.2, 0.4, 0.8, 1.6, 3 s (the test's cap): deep in backoff
    enforcer.wait_ps(lambda p: p.get("loop.c.0", {}).get("restarts", 0) >= 6, timeout=30)
    enforcer.stop()
    restarted = time.time()
    enforcer.start()
    time.sleep(3)
    burst = [
        e
        for e in _events(enforcer, "container.restarted")
        if e["instance"] == "loop.c.0" and float(str(e["time"])) > restarted
    ]
    assert len(burst) <= 1, [e["time"] for e in burst]
    assert enforcer.ps()["loop.c.0"]["restarts"] >= 6  # the count survives too


def test_an_engine_outage_is_not_a_liveness_failure(test_image: str, registry: object) -> None:
    """With live-restore, containers run on while the engine is away; the probes that could
    not reach it do not restart anything once it is back."""
    from tests.support.images import import_image
    from tests.support.processes import stop_pid

    root = Path(tempfile.mkdtemp(prefix="lr-", dir="/tmp"))
    eng = DockerEngine(root / "d", extra_args=("--live-restore",))
    eng.start()
    enf = EnforcerProc(root / "e", eng.url)
    try:
        client = docker.DockerClient(base_url=eng.url)
        image = import_image(client, "edgeward/live", "1")
        alive = {"liveness": {"exec": ["true"], "period": "200ms", "failure-threshold": 1}}
        enf.start()
        enf.apply(app("steady", service("p", container("main", image, "sleep", "100000",
                                                         probes=alive))))  # fmt: skip
        enf.wait_running("steady.p.0")
        before = client.containers.get("ew.steady.p.0.main").attrs["State"]["StartedAt"]
        assert eng.proc is not None
        stop_pid(eng.proc)  # live-restore: the container keeps running
        eng.proc = None
        enf.wait_ps(lambda p: p["steady.p.0"]["state"] == "unknown", timeout=15)
        time.sleep(1.5)  # probes try, and cannot reach the engine
        eng.start()
        enf.wait_running("steady.p.0", timeout=30)
        time.sleep(2)
        after = client.containers.get("ew.steady.p.0.main").attrs["State"]["StartedAt"]
        assert after == before, enf.log_tail()
        assert enf.ps()["steady.p.0"]["restarts"] == 0
        client.close()
    finally:
        enf.stop()
        enf.remove_firewall()
        eng.stop()
        shutil.rmtree(root, ignore_errors=True)
