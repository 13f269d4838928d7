"""Deployment specs, placement by site labels, and the rollout as a pure function."""

from __future__ import annotations

from typing import Any

import pytest

from control.fleet.deployments import (
    DeploymentError,
    DeploymentSpec,
    OnFailure,
    Strategy,
    deployment_to_document,
    parse_deployment,
)
from control.fleet.placement import applications_for_site
from control.fleet.rollout import Phase, Rollout, SiteView, advance, observe_status, start_rollout


def doc(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "vision-eu",
        "application": "vision",
        "version": "1.2.0",
        "placement": {"match-site-labels": "customer = acme"},
    }
    base.update(changes)
    return base


def errors_of(document: Any) -> list[tuple[str, str]]:
    with pytest.raises(DeploymentError) as info:
        parse_deployment(document)
    return info.value.errors


def test_the_design_example_parses_with_its_strategy() -> None:
    spec = parse_deployment(
        doc(
            placement={"match-site-labels": "customer = acme and region in (eu, uk)"},
            strategy={
                "canary-sites": "canary",
                "canary-healthy-time": "5m",
                "sites-in-parallel": 10,
                "healthy-time": "1m",
                "on-failure": "pause",
            },
        )
    )
    assert spec.strategy == Strategy("canary", 300.0, 10, 60.0, OnFailure.PAUSE)
    assert parse_deployment(deployment_to_document(spec)) == spec


def test_version_defaults_to_latest_and_all_sites_is_accepted() -> None:
    spec = parse_deployment({"name": "d", "application": "a", "placement": {"all-sites": True}})
    assert spec.version == "latest" and spec.all_sites and spec.matches({})


def test_every_error_is_reported_with_its_path() -> None:
    errors = errors_of(
        {
            "name": "Bad_Name",
            "application": "vision",
            "colour": "red",
            "placement": {"match-site-labels": "a = = b", "near": 1},
            "strategy": {
                "healthy-time": "1x",
                "sites-in-parallel": -1,
                "on-failure": "explode",
                "canary": "x",
            },
        }
    )
    paths = [p for p, _ in errors]
    assert paths == [
        "colour",
        "name",
        "placement.near",
        "placement.match-site-labels",
        "strategy.canary",
        "strategy.healthy-time",
        "strategy.sites-in-parallel",
        "strategy.on-failure",
    ]
    label_error = dict(errors)["placement.match-site-labels"]
    assert "column 5" in label_error


def test_placement_is_required() -> None:
    assert errors_of({"name": "d", "application": "a"})[0][0] == "placement"
    assert errors_of({"name": "d", "application": "a", "placement": {}})[0][0] == "placement"


def done(target: str) -> Rollout:
    return Rollout(target=target, phase=Phase.DONE)


def test_a_site_gets_exactly_the_applications_whose_deployments_match_its_labels() -> None:
    acme = parse_deployment(doc())
    everywhere = parse_deployment(
        {"name": "agent", "application": "agent", "version": "3", "placement": {"all-sites": True}}
    )
    deployments = [(acme, done("1.2.0"), "system"), (everywhere, done("3"), "system")]
    placed = applications_for_site({"system/name": "s1", "customer": "acme"}, deployments)
    assert [(p.application, p.version) for p in placed] == [("agent", "3"), ("vision", "1.2.0")]
    placed = applications_for_site({"system/name": "s2", "customer": "other"}, deployments)
    assert [p.application for p in placed] == ["agent"]
    placed = applications_for_site(
        {"system/name": "s1", "customer": "acme"}, deployments, eligible={"system": False}
    )
    assert placed == []


def test_two_deployments_of_one_application_resolve_by_name() -> None:
    first = parse_deployment(doc(name="a-first", version="1"))
    second = parse_deployment(doc(name="b-second", version="2"))
    placed = applications_for_site(
        {"customer": "acme"}, [(second, done("2"), "system"), (first, done("1"), "system")]
    )
    assert [(p.deployment, p.version) for p in placed] == [("a-first", "1")]


def view(
    name: str,
    in_sync: bool = True,
    ready_since: float | None = 0.0,
    failed: str = "",
    **labels: str,
) -> SiteView:
    return SiteView(
        name, {"system/name": name, "customer": "acme", **labels}, in_sync, ready_since, failed
    )


def strategy_spec(**strategy: Any) -> DeploymentSpec:
    return parse_deployment(doc(strategy=strategy))


def test_canary_sites_go_first_then_batches_of_sites_in_parallel() -> None:
    spec = strategy_spec(
        **{
            "canary-sites": "canary",
            "canary-healthy-time": "5m",
            "sites-in-parallel": 2,
            "healthy-time": "1m",
        }
    )
    sites = [view("s1"), view("s2", canary="yes"), view("s3"), view("s4"), view("s5")]
    not_ready = [SiteView(s.name, s.labels, True, None) for s in sites]
    rollout = advance(
        spec, start_rollout(done("1.0"), "2.0", [s.name for s in sites], 0.0), not_ready, 0.0
    )
    assert rollout.phase is Phase.CANARY and rollout.updated == {"s2"}
    assert rollout.version_for("s2") == "2.0" and rollout.version_for("s1") == "1.0"
    # the canary is ready at t=10 but must stay so for 5 minutes
    canary_ready = [
        view("s1"),
        view("s2", ready_since=10.0, canary="yes"),
        view("s3"),
        view("s4"),
        view("s5"),
    ]
    assert advance(spec, rollout, canary_ready, 300.0).updated == {"s2"}
    rollout = advance(spec, rollout, canary_ready, 310.0)
    assert rollout.phase is Phase.ROLLING and rollout.updated == {"s1", "s2", "s3"}
    waiting = advance(spec, rollout, [view("s1", in_sync=False), *canary_ready[1:]], 400.0)
    assert waiting.updated == rollout.updated and "s1" in waiting.message
    rollout = advance(spec, rollout, canary_ready, 400.0)
    assert rollout.updated == {"s1", "s2", "s3", "s4", "s5"}
    rollout = advance(spec, rollout, canary_ready, 500.0)
    assert rollout.phase is Phase.DONE
    assert rollout.version_for("new-site") == "2.0"


def test_without_a_strategy_all_matching_sites_update_at_once_and_newcomers_join() -> None:
    spec = parse_deployment(doc())
    rollout = advance(spec, start_rollout(None, "1.0", [], 0.0), [view("s1"), view("s2")], 0.0)
    assert rollout.updated == {"s1", "s2"}
    rollout = advance(spec, rollout, [view("s1", ready_since=None), view("s2"), view("s3")], 1.0)
    assert "s3" in rollout.updated and rollout.phase is Phase.ROLLING
    assert rollout.version_for("s3") == "1.0"


def test_a_failing_site_rolls_back_to_the_previous_versions() -> None:
    spec = strategy_spec(**{"sites-in-parallel": 1})
    rollout = advance(
        spec, start_rollout(done("1.0"), "2.0", ["s1", "s2"], 0.0), [view("s1"), view("s2")], 0.0
    )
    assert rollout.updated == {"s1"}
    rollout = advance(spec, rollout, [view("s1", failed="instance x is failed"), view("s2")], 5.0)
    assert rollout.phase is Phase.ROLLED_BACK and "s1" in rollout.message
    assert rollout.version_for("s1") == "1.0" and rollout.version_for("s2") == "1.0"
    assert advance(spec, rollout, [view("s1"), view("s2")], 500.0) == rollout


def test_on_failure_pause_keeps_updated_sites_and_stops() -> None:
    spec = strategy_spec(**{"sites-in-parallel": 1, "on-failure": "pause"})
    rollout = advance(
        spec, start_rollout(done("1.0"), "2.0", ["s1", "s2"], 0.0), [view("s1"), view("s2")], 0.0
    )
    rollout = advance(spec, rollout, [view("s1", failed="bad"), view("s2")], 5.0)
    assert rollout.phase is Phase.PAUSED
    assert rollout.version_for("s1") == "2.0" and rollout.version_for("s2") == "1.0"


def test_a_site_that_stops_matching_does_not_hold_up_the_rollout() -> None:
    spec = strategy_spec(**{"sites-in-parallel": 1, "healthy-time": "0s"})
    rollout = advance(spec, start_rollout(None, "1.0", [], 0.0), [view("s1"), view("s2")], 0.0)
    gone = SiteView("s1", {"system/name": "s1"}, False, None)
    rollout = advance(spec, rollout, [gone, view("s2")], 1.0)
    assert rollout.updated == {"s1", "s2"}
    assert advance(spec, rollout, [gone, view("s2")], 2.0).phase is Phase.DONE


def test_rollout_round_trips_through_json() -> None:
    rollout = Rollout("2", Phase.CANARY, {"a": "1"}, frozenset({"b"}), 3.0, "m")
    assert Rollout.from_json(rollout.to_json()) == rollout


def test_observe_status_tracks_ready_since_and_failures() -> None:
    instances = [
        {"id": "v.m.0", "app": "v", "ready": True, "state": "running"},
        {"id": "v.m.1", "app": "v", "ready": True, "state": "running"},
        {"id": "o.m.0", "app": "o", "ready": False, "state": "failed"},
    ]
    ready, failed = observe_status({}, instances, {"v": "1", "o": "1"}, 10.0)
    assert ready == {"v": 10.0} and failed == {"o": "instance o.m.0 is failed"}
    ready, _ = observe_status(ready, instances, {"v": "1", "o": "1"}, 20.0)
    assert ready == {"v": 10.0}
    old_version = [{**i, "version": "0"} for i in instances[:2]]
    assert observe_status({}, old_version, {"v": "1"}, 30.0)[0] == {}
