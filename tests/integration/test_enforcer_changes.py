"""Reacting to change while busy: a change reaches a busy worker within seconds."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import docker

from enforcer.network.firewall import Firewall
from enforcer.reconcile.instances import Context, desired_instance
from enforcer.reconcile.reconciler import Reconciler
from enforcer.reconcile.restarts import BackoffPolicy
from enforcer.runtime.docker import DockerRuntime
from enforcer.shared.spec import parse_application
from enforcer.site.store import Store
from tests.support.apps import app, container, service, sleeper
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine


def _events(enforcer: EnforcerProc, kind: str) -> list[dict[str, object]]:
    res = enforcer.cli("events", "-o", "json")
    assert res.returncode == 0, res.stderr
    out = res.stdout.strip()
    items = json.loads(out) if out.startswith("[") else [json.loads(x) for x in out.splitlines()]
    return [e for e in items if e["kind"] == kind]


def test_removing_an_app_in_the_middle_of_a_rolling_update_takes_effect_within_seconds(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    enforcer.apply(app("roll", sleeper("r", test_image, replicas=2)))
    enforcer.wait_running("roll.r.0", "roll.r.1")
    never_ready = {"readiness": {"exec": ["test", "-f", "/never"], "period": "200ms"}}
    v2 = service(
        "r", container("main", test_image, "sleep", "200000", probes=never_ready), replicas=2
    )
    enforcer.apply(app("roll", v2, version="2"))

    def replaced() -> list[str]:  # one replica is new and waits for readiness, holding the lock
        return [
            str(c.labels["edgeward.instance"])
            for c in docker_client.containers.list(filters={"label": "edgeward.app=roll"})
            if c.attrs["Config"]["Cmd"][-1] == "200000"
        ]

    enforcer.wait_ps(lambda _: len(replaced()) == 1, timeout=15)
    time.sleep(0.5)
    (first,) = replaced()
    other = "roll.r.1" if first == "roll.r.0" else "roll.r.0"
    started_before = _started(enforcer, other)
    t0 = time.monotonic()
    res = enforcer.cli("rm", "roll")
    took = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert took < 10, f"rm took {took:.1f}s"
    assert docker_client.containers.list(all=True, filters={"label": "edgeward.app=roll"}) == []
    # the other replica never applied its stale plan (no container made for v2)
    assert _started(enforcer, other) == started_before


def _started(enforcer: EnforcerProc, instance: str) -> int:
    return sum(1 for e in _events(enforcer, "container.started") if e["instance"] == instance)


def test_leftovers_of_instances_no_longer_desired_are_removed_at_start(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    enforcer.apply(app("kept", sleeper("s", test_image)))
    enforcer.wait_running("kept.s.0")
    enforcer.stop()
    labels = {
        "edgeward.managed": "true",
        "edgeward.tenant": "system",
        "edgeward.app": "ghost",
        "edgeward.instance": "ghost.s.0",
        "edgeward.container": "main",
    }
    ghost = docker_client.containers.run(
        test_image,
        ["sleep", "100000"],
        name="ew.ghost.s.0.main",
        labels=labels,
        stop_signal="SIGKILL",
        detach=True,
    )
    try:
        enforcer.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not docker_client.containers.list(all=True, filters={"id": ghost.id}):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(
                f"the leftover is still there 5s after start\n{enforcer.log_tail()}"
            )
        assert enforcer.wait_running("kept.s.0")
    finally:
        for c in docker_client.containers.list(all=True, filters={"id": ghost.id}):
            c.remove(force=True)


def test_workers_of_removed_instances_are_dropped(engine: DockerEngine, test_image: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="rec-", dir="/tmp"))
    firewall = Firewall(f"workers-test:{root}")
    doc = app("many", sleeper("s", test_image, replicas=3))
    parsed = parse_application(doc)
    ctx = Context(site="test-site", host=f"host-{root.name}")
    want = {
        f"many.s.{i}": desired_instance(
            parsed, parsed.services[0], f"many.s.{i}", ctx, instances_dir=str(root / "inst")
        )
        for i in range(3)
    }

    async def emit(*_: object, **__: object) -> None:
        return None

    async def scenario() -> tuple[int, int]:
        store = Store(root / "enforcer.db")
        await store.open()
        runtime = DockerRuntime(engine.url)
        rec = Reconciler(
            runtime,
            store,
            ctx,
            instances_dir=root / "inst",
            backoff=BackoffPolicy(),
            resync_interval=30,
            emit=emit,
            firewall=firewall,
        )
        await rec.start()
        try:
            rec.set_desired(want, {}, {"many": parsed})
            await _until(lambda: all(s.state.value == "running" for s in rec.instances()), 30)
            while_running = len(rec.workers)
            rec.set_desired({}, {}, {})
            await _until(lambda: not rec.workers, 15)
            return while_running, len(rec.workers)
        finally:
            rec.set_desired({}, {}, {})
            await _until(lambda: not rec.workers, 15)
            await rec.resync()  # its network too
            await rec.stop()
            await store.close()
            runtime.close()

    try:
        assert asyncio.run(scenario()) == (3, 0)
    finally:
        asyncio.run(firewall.remove())
        shutil.rmtree(root, ignore_errors=True)


async def _until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():  # type: ignore[operator]
        await asyncio.sleep(0.1)
