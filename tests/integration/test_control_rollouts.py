"""Fleet rollouts with real parts: control and five enrolled enforcers, each with its own dockerd.

One site carries `canary=yes`. The engines are sampled every 100 ms, so the tests see the order
in which sites switched and every version a site ever ran — not only where things ended.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from control.cli.client import ApiError
from tests.support.apps import app, container, service
from tests.support.control import ControlProcess, api_error
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine, free_address_pools

SITES = ("store-1", "store-2", "store-3", "store-4", "store-5")
CANARY = "store-1"
APP = "till"
STRATEGY = {
    "canary-sites": "canary = yes",
    "canary-healthy-time": "3s",
    "sites-in-parallel": 2,
    "healthy-time": "1s",
    "ready-timeout": "30s",
}


@dataclass
class Site:
    name: str
    engine: DockerEngine
    enforcer: EnforcerProc
    client: docker.DockerClient


@dataclass
class Sampler:
    """Which version of APP each site runs, every 100 ms, with when each was first seen."""

    sites: list[Site]
    first_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    current: dict[str, set[str]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            for s in self.sites:
                try:
                    found = s.client.containers.list(filters={"label": f"edgeward.app={APP}"})
                except Exception:
                    continue
                versions = {c.labels.get("edgeward.version", "?") for c in found}
                self.current[s.name] = versions
                for v in versions:
                    self.first_seen.setdefault((s.name, v), time.monotonic())
            time.sleep(0.1)

    def ran(self, version: str) -> set[str]:
        return {site for site, v in self.first_seen if v == version}


@dataclass
class Fleet:
    control: ControlProcess
    sites: list[Site]
    sampler: Sampler
    image: str

    def push(self, version: str, *cmd: str, image: str = "") -> None:
        spec = app(APP, service("pos", container("main", image or self.image, *cmd)),
                   version=version)  # fmt: skip
        self.control.client().put(f"/v1/applications/{APP}/versions/{version}", spec)

    def status(self) -> dict[str, Any]:
        return dict(self.control.client().get(f"/v1/deployments/{APP}/status"))

    def wait_phase(self, phases: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            if status["phase"] in phases:
                return status
            time.sleep(0.2)
        raise AssertionError(f"rollout never reached {phases}: {status.get('phase')} "
                             f"{status.get('message')}")  # fmt: skip

    def wait_all_on(self, version: str, timeout: float = 60, sites: tuple[str, ...] = SITES) -> None:
        try:
            wait(lambda: all(self.sampler.current.get(s) == {version} for s in sites), timeout,
                 f"{version} on {sites}")  # fmt: skip
        except AssertionError as e:
            status = self.status()
            lines = [f"{s['site']}: {s['version']} {s['health']} {s['failed']}"
                     for s in status["sites"]]  # fmt: skip
            raise AssertionError(f"{e}: engines {self.sampler.current}; {status['phase']} "
                                 f"{status['message']}; " + "; ".join(lines)) from None

    def cli(self, *args: str) -> Any:
        return self.control.cli(*args)


def refusal(fleet: Fleet, doc: dict[str, Any]) -> ApiError:
    return api_error(lambda: fleet.control.deploy(doc))


def wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def fleet(test_image: str) -> Iterator[Fleet]:
    root = Path(tempfile.mkdtemp(prefix="rollouts-", dir="/tmp"))
    (root / "control").mkdir()
    control = ControlProcess(root / "control")
    control.start()
    engines = [DockerEngine(root / f"docker-{i}", pool=pool)
               for i, pool in enumerate(free_address_pools(len(SITES)))]  # fmt: skip
    sites: list[Site] = []
    sampler = Sampler(sites)
    thread = threading.Thread(target=sampler.run, daemon=True)
    try:
        for e in engines:  # one at a time: starting dockerds set up shared iptables chains
            e.start()

        def enroll(i: int) -> Site:
            name = SITES[i]
            labels = {"chain": "acme", **({"canary": "yes"} if name == CANARY else {})}
            bundle = control.bundle(name, labels)
            enf = EnforcerProc(root / name, engines[i].url,
                               extra_config=f'[control]\nenrollment = "{bundle}"\n')  # fmt: skip
            enf.start()
            return Site(name, engines[i], enf, docker.DockerClient(base_url=engines[i].url))

        with ThreadPoolExecutor(len(SITES)) as pool:
            sites.extend(pool.map(enroll, range(len(SITES))))
        thread.start()
        yield Fleet(control, sites, sampler, test_image)
    finally:
        sampler.stop.set()
        if thread.is_alive():
            thread.join(5)

        def leave(s: Site) -> None:
            if s.enforcer.proc is not None:
                os.kill(s.enforcer.proc.pid, signal.SIGCONT)
            s.enforcer.stop()
            s.enforcer.remove_firewall()
            s.enforcer.unmount_secrets()
            s.client.close()

        with ThreadPoolExecutor(len(SITES)) as pool:
            list(pool.map(leave, sites))
        for e in engines:
            e.stop()
        control.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_good_version_rolls_out_to_the_canary_first_then_in_batches(fleet: Fleet) -> None:
    fleet.push("1", "sleep", "100000")
    fleet.control.deploy({"name": APP, "application": APP, "version": "latest",
                          "placement": {"match-site-labels": "chain = acme"},
                          "strategy": STRATEGY})  # fmt: skip
    fleet.wait_phase({"done"})
    fleet.wait_all_on("1")

    fleet.push("2", "sleep", "200000")
    status = fleet.wait_phase({"done"})
    fleet.wait_all_on("2")
    seen = {s: fleet.sampler.first_seen[(s, "2")] for s in SITES}
    order = sorted(SITES, key=seen.__getitem__)
    assert order[0] == CANARY, seen
    # after the canary (3 s healthy: longer than a site's 2 s between status snapshots, so a
    # crash loop shows), batches of two in name order, each after the one before was healthy 1 s
    first, second = ("store-2", "store-3"), ("store-4", "store-5")
    assert max(seen[s] for s in first) < min(seen[s] for s in second), seen
    assert min(seen[s] for s in first) - seen[CANARY] >= 3.0, seen
    assert status["history"][-1]["target"] == "2" and status["history"][-1]["phase"] == "done"
    assert {s["site"]: (s["version"], s["health"]) for s in status["sites"]} == {
        s: ("2", "healthy") for s in SITES
    }


def test_a_version_that_exits_at_once_is_rolled_back_and_only_the_canary_ever_ran_it(
    fleet: Fleet,
) -> None:
    fleet.push("3", "false")
    status = fleet.wait_phase({"rolled-back"})
    assert status["message"].startswith(f"site {CANARY} failed: instance {APP}.pos.0 is ")
    assert "crash-looping" in status["message"] or "exited" in status["message"]
    fleet.wait_all_on("2")
    assert fleet.sampler.ran("3") == {CANARY}


def test_an_image_missing_from_the_registry_fails_at_the_canary_with_the_pull_error(
    fleet: Fleet,
) -> None:
    missing = fleet.image.rsplit(":", 1)[0] + ":does-not-exist"
    fleet.push("4", "sleep", "100000", image=missing)
    status = fleet.wait_phase({"rolled-back"})
    assert f"site {CANARY} failed: instance {APP}.pos.0 is image-pull-failed" in status["message"]
    assert "does-not-exist" in status["message"] or "not found" in status["message"].lower()
    fleet.wait_all_on("2")
    assert fleet.sampler.ran("4") == set()


def test_pause_holds_the_rollout_and_resume_finishes_it(fleet: Fleet) -> None:
    fleet.push("5", "sleep", "300000")
    paused = fleet.cli("deployment", "pause", APP, "--reason", "store opening hours")
    assert paused.returncode == 0, paused.stderr
    assert "paused" in paused.stdout and "store opening hours" in paused.stdout
    time.sleep(4.5)  # longer than the canary's 3 s and a batch's 1 s: nothing else moves
    assert fleet.status()["phase"] == "paused"
    assert fleet.sampler.ran("5") <= {CANARY}
    again = fleet.cli("deployment", "pause", APP)
    assert again.returncode == 1 and "nothing to pause" in again.stderr
    resumed = fleet.cli("deployment", "resume", APP)
    assert resumed.returncode == 0, resumed.stderr
    fleet.wait_phase({"done"})
    fleet.wait_all_on("5")


def test_a_site_offline_during_a_rollout_catches_up_and_never_runs_a_rolled_back_version(
    fleet: Fleet,
) -> None:
    offline = fleet.sites[-1]
    assert offline.enforcer.proc is not None
    os.kill(offline.enforcer.proc.pid, signal.SIGSTOP)
    try:
        fleet.push("6", "false")  # bad: rolled back while store-5 is away
        fleet.wait_phase({"rolled-back"})
        fleet.push("7", "sleep", "400000")  # good: store-5 is waited for, not failed
        fleet.wait_all_on("7", sites=SITES[:-1])
        status = fleet.status()
        assert status["phase"] == "rolling", status
        assert {s["site"]: s["health"] for s in status["sites"]}["store-5"] == "waiting"
    finally:
        os.kill(offline.enforcer.proc.pid, signal.SIGCONT)
    fleet.wait_phase({"done"})
    fleet.wait_all_on("7")
    assert "store-5" not in fleet.sampler.ran("6")


def test_a_manual_rollback_returns_every_site_to_the_version_before(fleet: Fleet) -> None:
    result = fleet.cli("deployment", "rollback", APP)
    assert result.returncode == 0, result.stderr
    fleet.wait_all_on("5")
    status = fleet.cli("deployment", "status", APP)
    assert status.returncode == 0 and "rolled-back" in status.stdout
    again = fleet.cli("deployment", "rollback", APP)
    assert again.returncode == 1 and "rolled back already" in again.stderr


def test_bad_deployments_get_one_clear_message_and_change_nothing_at_any_site(
    fleet: Fleet,
) -> None:
    before = {s.name: sorted(str(c.id) for c in s.client.containers.list()) for s in fleet.sites}
    base = {"application": APP, "placement": {"match-site-labels": "chain = acme"}}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"name": "nine", "version": "9", **base}, 422,
         "version: application till has no version '9'"),
        ({"name": "zero", "version": "5", **base, "strategy": {"sites-in-parallel": 0}}, 422,
         "strategy.sites-in-parallel: must be at least 1"),
        ({"name": "nocanary", "version": "5", **base, "strategy": {"canary-sites": "lab = y"}},
         422, "matches none of the 5 site(s)"),
        ({"name": "twice", "version": "5", "application": APP,
          "placement": {"match-site-labels": "canary = yes"}}, 409,
         f"deployments twice and {APP} would both place application {APP} on site {CANARY}"),
    ]  # fmt: skip
    for doc, code, message in cases:
        error = refusal(fleet, doc)
        assert error.status == code and message in str(error), (doc["name"], str(error))
    after = {s.name: sorted(str(c.id) for c in s.client.containers.list()) for s in fleet.sites}
    assert after == before
    assert [d["name"] for d in fleet.control.client().get("/v1/deployments")["deployments"]] == [
        APP
    ]
