"""Containers are healed: restarted, recreated, backed off, probed, re-adopted."""

from __future__ import annotations

import itertools
import signal
import time

import docker
import docker.errors

from tests.support.apps import app, container, service, sleeper
from tests.support.enforcer import EnforcerProc


def started_at(client: docker.DockerClient, name: str) -> str:
    c = client.containers.get(name)
    return str(c.attrs["State"]["StartedAt"]) if c.status == "running" else ""


def wait_restarted(client: docker.DockerClient, name: str, before: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            now = started_at(client, name)
        except docker.errors.NotFound:
            now = ""
        if now and now != before:
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"{name} not running again within {timeout}s")


def test_killed_container_is_running_again_within_two_seconds(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    enforcer.apply(app("heal", sleeper("s", test_image)))
    enforcer.wait_running("heal.s.0")
    before = started_at(docker_client, "ew.heal.s.0.main")
    docker_client.containers.get("ew.heal.s.0.main").kill()
    assert wait_restarted(docker_client, "ew.heal.s.0.main", before, 2.0) < 2.0
    ps = enforcer.wait_ps(lambda p: p["heal.s.0"]["restarts"] == 1)
    assert ps["heal.s.0"]["last_exit_code"] == 137


def test_removed_container_is_recreated_within_two_seconds(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    enforcer.apply(app("heal", sleeper("s", test_image)))
    enforcer.wait_running("heal.s.0")
    old = docker_client.containers.get("ew.heal.s.0.main")
    old.remove(force=True)
    wait_restarted(docker_client, "ew.heal.s.0.main", "", 2.0)
    assert docker_client.containers.get("ew.heal.s.0.main").id != old.id


def test_crash_loop_backs_off_exponentially_while_other_apps_keep_reconciling(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    crash = service("c", container("main", test_image, "sh", "-c", "exit 3"))
    enforcer.apply(app("crashy", crash))
    enforcer.apply(app("calm", sleeper("s", test_image)))
    ps = enforcer.wait_ps(lambda p: p.get("crashy.c.0", {}).get("restarts", 0) >= 5, timeout=20)
    enforcer.wait_running("calm.s.0")
    c = ps["crashy.c.0"]
    assert c["last_exit_code"] == 3
    backoff = enforcer.wait_ps(lambda p: p["crashy.c.0"]["state"] == "backoff")["crashy.c.0"]
    assert backoff["next_retry"] is not None and "next retry" in backoff["reason"]

    starts = [
        e["time"]
        for e in _events(enforcer)
        if e["instance"] == "crashy.c.0"
        and e["kind"] in ("container.started", "container.restarted")
    ]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) >= 4
    # 0 (first restart is immediate), then 0.2s, 0.4s, 0.8s, 1.6s ... capped at 3s (test
    # config), each gap plus the time a start takes (most of a second on a loaded machine)
    assert gaps[-1] - gaps[1] > 0.8, gaps
    assert max(gaps) < 3 * 1.2 + 1.0, gaps
    # meanwhile a kill in another application still heals at once
    before = started_at(docker_client, "ew.calm.s.0.main")
    docker_client.containers.get("ew.calm.s.0.main").kill()
    assert wait_restarted(docker_client, "ew.calm.s.0.main", before, 2.0) < 2.0


def _events(enforcer: EnforcerProc) -> list[dict[str, object]]:
    import json

    res = enforcer.cli("events", "-o", "json")
    assert res.returncode == 0, res.stderr
    out = res.stdout.strip()
    if out.startswith("["):
        return list(json.loads(out))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_a_failing_liveness_probe_restarts_the_container(
    enforcer: EnforcerProc, test_image: str
) -> None:
    probes = {
        "liveness": {
            "exec": ["test", "-f", "/tmp/healthy"],
            "period": "300ms",
            "failure-threshold": 2,
        }
    }
    svc = service(
        "p",
        container(
            "main",
            test_image,
            "sh",
            "-c",
            "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 100000",
            probes=probes,
        ),
    )
    enforcer.apply(app("live", svc))
    enforcer.wait_ps(lambda p: p.get("live.p.0", {}).get("restarts", 0) >= 1, timeout=15)


def test_readiness_is_reported_and_startup_holds_liveness(
    enforcer: EnforcerProc, test_image: str
) -> None:
    probes = {
        # the file appears after 1.5s: liveness would fail before it, but startup holds it
        "startup": {"exec": ["test", "-f", "/tmp/up"], "period": "200ms", "failure-threshold": 30},
        "liveness": {"exec": ["test", "-f", "/tmp/up"], "period": "200ms", "failure-threshold": 1},
        "readiness": {"exec": ["test", "-f", "/tmp/ready"], "period": "200ms"},
    }
    script = "sleep 1.5; touch /tmp/up; sleep 1; touch /tmp/ready; sleep 100000"
    enforcer.apply(
        app("ready", service("r", container("main", test_image, "sh", "-c", script, probes=probes)))
    )
    early = enforcer.wait_ps(lambda p: "ready.r.0" in p)["ready.r.0"]
    assert early["ready"] is False
    ps = enforcer.wait_ps(lambda p: p["ready.r.0"]["ready"] is True, timeout=15)
    assert ps["ready.r.0"]["restarts"] == 0
    assert ps["ready.r.0"]["state"] == "running"


def test_images_are_pulled_and_a_missing_image_is_reported_and_retried(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str, registry: object
) -> None:
    for img in docker_client.images.list(name=test_image.rsplit(":", 1)[0]):
        for tag in img.tags:
            docker_client.images.remove(tag, force=True)
    missing = test_image.rsplit(":", 1)[0] + ":does-not-exist"
    enforcer.apply(app("pulled", sleeper("s", test_image)))
    enforcer.apply(app("broken", sleeper("s", missing)))
    enforcer.wait_running("pulled.s.0")
    first = enforcer.wait_ps(lambda p: p.get("broken.s.0", {}).get("state") == "image-pull-failed")
    assert "does-not-exist" in first["broken.s.0"]["reason"]
    assert first["broken.s.0"]["next_retry"] is not None
    # retried with backoff: the failure is reported again later
    n = sum(1 for e in _events(enforcer) if e["kind"] == "image.pull-failed")
    enforcer.wait_ps(
        lambda p: sum(1 for e in _events(enforcer) if e["kind"] == "image.pull-failed") > n,
        timeout=10,
    )


def test_restarting_the_enforcer_restarts_nothing_and_duplicates_nothing(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    enforcer.apply(app("keep", sleeper("a", test_image, replicas=2), sleeper("b", test_image)))
    enforcer.wait_running("keep.a.0", "keep.a.1", "keep.b.0")

    def snapshot() -> dict[str, tuple[str, str]]:
        return {
            c.name: (c.id, c.attrs["State"]["StartedAt"])
            for c in docker_client.containers.list(all=True, filters={"label": "edgeward.app=keep"})
        }

    before = snapshot()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        enforcer.stop(sig)
        assert snapshot() == before  # stopping the enforcer is not stopping the work
        enforcer.start()
        enforcer.wait_running("keep.a.0", "keep.a.1", "keep.b.0")
        time.sleep(1.5)  # the adopting passes of every worker have run
        assert snapshot() == before


def test_a_new_version_recreates_only_changed_instances_one_replica_at_a_time(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    v1 = app("roll", sleeper("changing", test_image, replicas=3), sleeper("same", test_image))
    enforcer.apply(v1)
    enforcer.wait_running("roll.changing.0", "roll.changing.1", "roll.changing.2", "roll.same.0")
    same_id = docker_client.containers.get("ew.roll.same.0.main").id
    changing = service("changing", container("main", test_image, "sleep", "200000"), replicas=3)
    v2 = app("roll", changing, sleeper("same", test_image), version="2")
    enforcer.apply(v2)
    def last_arg(name: str) -> str | None:  # None while the replica is being replaced
        try:
            return str(docker_client.containers.get(name).attrs["Config"]["Cmd"][-1])
        except docker.errors.NotFound:
            return None

    enforcer.wait_ps(
        lambda p: all(
            p[f"roll.changing.{i}"]["state"] == "running"
            and last_arg(f"ew.roll.changing.{i}.main") == "200000"
            for i in range(3)
        ),
        timeout=60,
    )
    # the unchanged service was not touched: the version alone does not change its hash
    assert docker_client.containers.get("ew.roll.same.0.main").id == same_id
    def updates() -> list[dict[str, object]]:
        return [e for e in _events(enforcer) if e["kind"] == "instance.updated"]

    # the update event of the last replica follows its readiness by a moment
    enforcer.wait_ps(lambda _: len(updates()) >= 3, timeout=10)
    stamps = sorted(float(str(e["time"])) for e in updates())
    assert sorted(str(e["instance"]) for e in updates()) == [
        "roll.changing.0", "roll.changing.1", "roll.changing.2"
    ]
    # one at a time: never two replicas down together -> recreations are spread out
    assert all(b - a > 0.05 for a, b in itertools.pairwise(stamps)), stamps


def test_removing_an_app_removes_everything_but_persistent_volumes_until_purge(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    svc = service(
        "db",
        container(
            "main", test_image, "sleep", "100000",
            mounts=[{"volume": "data", "path": "/data"}, {"volume": "tmp", "path": "/scratch"}],
        ),
        volumes=[{"name": "data", "persistent": {}}, {"name": "tmp", "ephemeral": {}}],
    )  # fmt: skip
    enforcer.apply(app("store", svc))
    enforcer.wait_running("store.db.0")
    vols = {v.name for v in docker_client.volumes.list(filters={"label": "edgeward.app=store"})}
    assert vols == {"ew.store.db.0.data", "ew.store.db.0.tmp"}

    assert enforcer.cli("rm", "store").returncode == 0
    assert docker_client.containers.list(all=True, filters={"label": "edgeward.app=store"}) == []
    assert docker_client.networks.list(names=["ew.system.store"]) == []
    vols = {v.name for v in docker_client.volumes.list(filters={"label": "edgeward.app=store"})}
    assert vols == {"ew.store.db.0.data"}

    enforcer.apply(app("store", svc))
    enforcer.wait_running("store.db.0")
    res = enforcer.cli("rm", "store", "--purge")
    assert res.returncode == 0, res.stderr
    assert docker_client.volumes.list(filters={"label": "edgeward.app=store"}) == []


def test_http_probes_see_the_page_and_a_missing_page_restarts_the_container(
    enforcer: EnforcerProc, test_image: str
) -> None:
    httpd = ("httpd", "-f", "-p", "8080", "-h", "/www")
    ready = {"readiness": {"http": {"port": 8080, "path": "/index.html"}, "period": "200ms"}}
    gone = {
        "liveness": {
            "http": {"port": 8080, "path": "/missing.html"},
            "period": "300ms",
            "failure-threshold": 2,
        }
    }
    enforcer.apply(
        app(
            "probed",
            service("ok", container("main", test_image, *httpd, probes=ready)),
            service("bad", container("main", test_image, *httpd, probes=gone)),
        )
    )
    ps = enforcer.wait_ps(
        lambda p: p.get("probed.ok.0", {}).get("ready") is True
        and p.get("probed.bad.0", {}).get("restarts", 0) >= 1,
        timeout=20,
    )
    assert ps["probed.ok.0"]["restarts"] == 0
