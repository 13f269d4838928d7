"""No application can take a site down: what one application holds can fail only its own
instances (state failed, with the reason); the others are computed as usual."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from enforcer.facade import AppRecord, AppSource, InstanceState, NotFound
from enforcer.reconcile.instances import Context
from enforcer.schedule import scheduler
from enforcer.schedule.hosts import HostInfo
from enforcer.secrets.files import SecretFiles
from enforcer.secrets.vaults import SiteVaults
from enforcer.shared.spec import parse_application
from enforcer.shared.spec.model import Application, Variable
from enforcer.site import desired
from enforcer.site.applications import Applications
from enforcer.site.broken import BrokenApp
from enforcer.site.desired import DesiredState, desired_state, newly_waiting
from enforcer.site.store import Store

HOST = HostInfo("h1", (), cpus=4.0, memory=8 * 1024**3)


def doc(name: str, replicas: int = 1, **service: Any) -> dict[str, Any]:
    svc = {"name": "worker", "replicas": replicas, **service}
    svc.setdefault("containers", [{"name": "main", "image": "busybox"}])
    return {"name": name, "version": "1", "services": [svc]}


def app(name: str, replicas: int = 1, **service: Any) -> Application:
    return parse_application(doc(name, replicas, **service))


def with_undefined_reference(application: Application) -> Application:
    """What an older validator let through: a value that refers to an undefined ${NOPE}."""
    svc = application.services[0]
    bad = dataclasses.replace(svc, variables=(Variable("URL", "http://${NOPE}/"),))
    return dataclasses.replace(application, services=(bad,))


def compute(tmp_path: Path, *apps: Application, broken: Sequence[BrokenApp] = ()) -> DesiredState:
    async def noop(*args: Any, **kwargs: Any) -> None:
        return None

    return desired_state(
        HOST,
        {a.name: a for a in apps},
        (),
        (),
        SiteVaults(Store(tmp_path / "enforcer.db"), tmp_path, emit=noop),
        SecretFiles(tmp_path / "secrets"),
        Context(site="s", host=HOST.id),
        tmp_path / "instances",
        broken=broken,
    )


def test_an_instance_that_cannot_be_computed_fails_alone_with_the_reason(tmp_path: Path) -> None:
    bad = with_undefined_reference(
        app("bad", replicas=2, variables=[{"name": "URL", "value": "x"}])
    )
    state = compute(tmp_path, app("good"), bad)
    assert sorted(state.desired) == ["good.worker.0"]
    for iid in ("bad.worker.0", "bad.worker.1"):
        failed = state.pending[iid]
        assert failed.state is InstanceState.FAILED
        assert failed.app == "bad" and failed.service == "worker"
        assert "variables.URL: undefined variable ${NOPE}" in failed.reason
        assert state.held[iid] == ("system", "bad")  # any containers it has are left alone


def test_an_error_in_an_instance_s_secrets_fails_only_that_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = desired.instance_secrets

    def lookup(tenant: str, svc: Any, *args: Any) -> Any:
        if svc.name == "broken":
            raise RuntimeError("vault index corrupt")
        return real(tenant, svc, *args)

    monkeypatch.setattr(desired, "instance_secrets", lookup)
    broken = parse_application(
        {
            "name": "mixed",
            "version": "1",
            "services": [
                doc("x")["services"][0],
                {**doc("x")["services"][0], "name": "broken"},
            ],
        }
    )
    state = compute(tmp_path, broken, app("other"))
    assert sorted(state.desired) == ["mixed.worker.0", "other.worker.0"]
    failed = state.pending["mixed.broken.0"]
    assert failed.state is InstanceState.FAILED
    assert failed.reason == "internal error (RuntimeError: vault index corrupt), see the log"


def test_an_application_the_scheduler_fails_on_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = scheduler.schedule

    def schedule(hosts: Any, apps: Sequence[Application], *args: Any) -> Any:
        if any(a.name == "bad" for a in apps):
            raise ValueError("ports overlap in a way nobody foresaw")
        return real(hosts, apps, *args)

    monkeypatch.setattr(desired, "schedule", schedule)
    state = compute(tmp_path, app("good"), app("bad", replicas=2))
    assert sorted(state.desired) == ["good.worker.0"]
    assert {iid: (s.state, s.reason) for iid, s in state.pending.items()} == {
        iid: (InstanceState.FAILED, "cannot be scheduled: ports overlap in a way nobody foresaw")
        for iid in ("bad.worker.0", "bad.worker.1")
    }


def test_a_stored_application_that_no_longer_validates_shows_its_instances_failed(
    tmp_path: Path,
) -> None:
    stored = doc("old", replicas=2, variables=[{"name": "URL", "value": "${NOPE}"}])
    rec = AppRecord("old", "1", "acme", AppSource.LOCAL, stored, time.time())
    state = compute(tmp_path, app("good"), broken=[BrokenApp.of(rec, "undefined variable")])
    assert sorted(state.desired) == ["good.worker.0"]
    assert sorted(state.pending) == ["old.worker.0", "old.worker.1"]
    failed = state.pending["old.worker.1"]
    assert (failed.state, failed.reason, failed.tenant) == (
        InstanceState.FAILED,
        "undefined variable",
        "acme",
    )
    # a document that says nothing readable: one entry named after the application
    garbage = AppRecord("junk", "2", "acme", AppSource.LOCAL, {"services": "no"}, 0.0)
    statuses = BrokenApp.of(garbage, "not a spec").statuses("h1")
    assert [(s.id, s.state, s.reason) for s in statuses.values()] == [
        ("junk", InstanceState.FAILED, "not a spec")
    ]


def test_a_change_from_pending_to_failed_is_news(tmp_path: Path) -> None:
    good = compute(tmp_path, app("a"))
    bad = compute(
        tmp_path, with_undefined_reference(app("a", variables=[{"name": "URL", "value": "x"}]))
    )
    assert [s.id for s in newly_waiting(good.pending, bad.pending)] == ["a.worker.0"]
    assert newly_waiting(bad.pending, bad.pending) == []


def test_a_stored_application_that_no_longer_validates_is_loaded_failed_and_can_be_removed(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        store = Store(tmp_path / "enforcer.db")
        await store.open()
        stored = doc("old", variables=[{"name": "URL", "value": "${NOPE}"}])
        await store.put_application(AppRecord("old", "1", "system", AppSource.LOCAL, stored, 0.0))
        await store.put_application(AppRecord("ok", "1", "system", AppSource.LOCAL, doc("ok"), 0.0))
        apps = Applications(store)
        await apps.load()
        assert sorted(apps.apps) == ["ok"]
        assert [r.name for r in apps.all()] == ["ok", "old"]
        assert "undefined variable ${NOPE}" in apps.broken["old"].reason
        # a valid application under its name replaces it
        await apps.apply_local(doc("old"))
        assert "old" in apps.apps and "old" not in apps.broken
        await store.put_application(AppRecord("old", "1", "system", AppSource.LOCAL, stored, 0.0))
        again = Applications(store)
        await again.load()
        await again.remove_local("old")
        assert "old" not in again.broken and [r.name for r in again.all()] == ["ok"]
        with pytest.raises(NotFound):
            again.get("old")
        await store.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
