"""Rollouts that stop themselves: health gates, offline sites, operator actions, history."""

from __future__ import annotations

from typing import Any

import pytest

from control.fleet.deployments import (
    DeploymentError,
    DeploymentSpec,
    canary_problem,
    deployment_to_document,
    parse_deployment,
)
from control.fleet.rollout import (
    Phase,
    Rollout,
    RolloutError,
    SiteView,
    advance,
    observe_status,
    pause,
    resume,
    roll_back,
    site_health,
    start_rollout,
)


def spec(**strategy: Any) -> DeploymentSpec:
    return parse_deployment(
        {
            "name": "vision-eu",
            "application": "vision",
            "version": "2.0",
            "placement": {"match-site-labels": "customer = acme"},
            "strategy": strategy,
        }
    )


def site(
    name: str,
    in_sync: bool = True,
    ready_since: float | None = 0.0,
    failed: str = "",
    online: bool = True,
    **labels: str,
) -> SiteView:
    return SiteView(name, {"customer": "acme", **labels}, in_sync, ready_since, failed, online)


def on_one(target: str = "1.0", sites: tuple[str, ...] = ("s1", "s2", "s3")) -> Rollout:
    return Rollout(target=target, phase=Phase.DONE, updated=frozenset(sites))


def test_a_crash_looping_instance_fails_its_site_with_the_reason_it_gave() -> None:
    instances = [
        {"id": "v.m.0", "app": "v", "state": "backoff", "restarts": 3, "reason": "exited 1",
         "ready": False},
    ]  # fmt: skip
    _, failed = observe_status({}, instances, {"v": "2"}, 10.0)
    assert failed == {"v": "instance v.m.0 is crash-looping (3 restarts): exited 1"}
    once = [{**instances[0], "restarts": 1}]
    assert observe_status({}, once, {"v": "2"}, 10.0)[1] == {}  # one crash is not a loop yet


def test_an_instance_of_the_version_on_its_way_out_fails_nothing() -> None:
    leaving = [{"id": "v.m.0", "app": "v", "version": "1", "state": "backoff", "restarts": 9,
                "ready": False}]  # fmt: skip
    assert observe_status({}, leaving, {"v": "2"}, 10.0) == ({}, {})


def test_an_instance_that_restarted_between_two_reports_starts_its_ready_time_again() -> None:
    first = [{"id": "v.m.0", "app": "v", "version": "2", "state": "running", "ready": True,
              "restarts": 1}]  # fmt: skip
    again = [{**first[0], "restarts": 2}]
    assert observe_status({"v": 5.0}, first, {"v": "2"}, 10.0, first)[0] == {"v": 5.0}
    assert observe_status({"v": 5.0}, again, {"v": "2"}, 10.0, first)[0] == {"v": 10.0}


def test_an_image_that_cannot_be_pulled_fails_its_site_with_the_pull_error() -> None:
    instances = [{"id": "v.m.0", "app": "v", "state": "image-pull-failed",
                  "reason": "manifest for reg/v:9 not found", "ready": False}]  # fmt: skip
    _, failed = observe_status({}, instances, {"v": "2"}, 10.0)
    assert failed["v"] == "instance v.m.0 is image-pull-failed: manifest for reg/v:9 not found"


def test_a_site_still_unready_past_the_ready_timeout_fails_the_rollout() -> None:
    s = spec(**{"sites-in-parallel": 1, "ready-timeout": "2m"})
    rollout = advance(s, start_rollout(on_one(), "2.0", ["s1", "s2"], 0.0),
                      [site("s1", ready_since=None), site("s2")], 0.0)  # fmt: skip
    assert rollout.updated == {"s1"}
    unready = [site("s1", ready_since=None), site("s2")]
    assert advance(s, rollout, unready, 119.0).phase is Phase.ROLLING
    failed = advance(s, rollout, unready, 121.0)
    assert failed.phase is Phase.ROLLED_BACK
    assert failed.message == "site s1 failed: not ready 2m after it was updated; rolled back"


def test_an_offline_site_holds_back_no_later_batch_and_gets_the_final_version_on_return() -> None:
    s = spec(**{"sites-in-parallel": 1, "healthy-time": "10s"})
    views = [site("s1"), site("s2", in_sync=False, ready_since=None, online=False), site("s3")]
    rollout = start_rollout(on_one(), "2.0", ["s1", "s2", "s3"], 0.0)
    for now in (0.0, 20.0, 40.0, 60.0):
        rollout = advance(s, rollout, views, now)
    assert rollout.phase is Phase.DONE
    assert "s2 offline" in rollout.message
    assert rollout.version_for("s2") == "2.0"


def test_an_offline_canary_is_waited_for_and_never_counts_as_failed() -> None:
    s = spec(**{"canary-sites": "canary", "healthy-time": "10s"})
    views = [site("c1", in_sync=False, ready_since=None, online=False, canary="y"), site("s1")]
    rollout = advance(s, start_rollout(on_one(), "2.0", ["c1", "s1"], 0.0), views, 0.0)
    assert rollout.phase is Phase.CANARY
    later = advance(s, rollout, views, 3600.0)
    assert later.phase is Phase.CANARY and later.updated == {"c1"}
    assert "waiting for c1" in later.message


def test_a_site_offline_during_a_rollback_returns_to_the_version_before_not_the_bad_one() -> None:
    s = spec(**{"sites-in-parallel": 2})
    views = [site("s1"), site("s2", online=False, in_sync=False, ready_since=None), site("s3")]
    rollout = advance(s, start_rollout(on_one(), "2.0", ["s1", "s2", "s3"], 0.0), views, 0.0)
    assert rollout.updated == {"s1", "s2"}
    rollout = advance(s, rollout, [site("s1", failed="instance x is failed"), *views[1:]], 5.0)
    assert rollout.phase is Phase.ROLLED_BACK
    assert {n: rollout.version_for(n) for n in ("s1", "s2", "s3")} == dict.fromkeys(
        ("s1", "s2", "s3"), "1.0"
    )


def test_pause_resume_and_rollback_by_an_operator() -> None:
    s = spec(**{"sites-in-parallel": 1})
    views = [site("s1"), site("s2")]
    rollout = advance(s, start_rollout(on_one(sites=("s1", "s2")), "2.0", ["s1", "s2"], 0.0),
                      views, 0.0)  # fmt: skip
    paused = pause(rollout, 1.0)
    assert paused.phase is Phase.PAUSED and advance(s, paused, views, 500.0) == paused
    resumed = resume(paused, 2.0)
    assert resumed.phase is Phase.ROLLING
    assert advance(s, resumed, views, 500.0).updated == {"s1", "s2"}
    back = roll_back(resumed, 3.0, "rolled back by an operator")
    assert back.phase is Phase.ROLLED_BACK and back.version_for("s1") == "1.0"


@pytest.mark.parametrize(
    ("action", "rollout", "message"),
    [
        (lambda r: pause(r, 1.0), on_one(), "the rollout of 1.0 is done: there is nothing to pause"),
        (lambda r: resume(r, 1.0), on_one(), "the rollout of 1.0 is done, not paused"),
        (lambda r: roll_back(r, 1.0, "x"), start_rollout(None, "1.0", [], 0.0),
         "no site ran a version before 1.0: there is nothing to roll back to"),
        (lambda r: roll_back(r, 1.0, "x"),
         Rollout("2.0", Phase.ROLLED_BACK, baseline={"s1": "1.0"}),
         "the rollout of 2.0 is rolled back already"),
    ],
)  # fmt: skip
def test_an_action_that_does_not_apply_says_why(action: Any, rollout: Rollout, message: str) -> None:
    with pytest.raises(RolloutError) as info:
        action(rollout)
    assert str(info.value) == message


def test_a_canary_expression_that_matches_no_site_is_refused_and_a_lost_canary_pauses() -> None:
    s = spec(**{"canary-sites": "canary"})
    assert canary_problem(s, [{"customer": "acme"}]) == (
        "'canary' matches none of the 1 site(s) this deployment places on: label a canary site, "
        "or leave canary-sites out"
    )
    assert canary_problem(s, []) == ""  # no site yet: accepted
    assert canary_problem(s, [{"canary": "y"}, {}]) == ""
    # relabelled after the deployment was accepted: nothing moves until an operator resumes
    rollout = advance(s, start_rollout(on_one(sites=("s1",)), "2.0", ["s1"], 0.0), [site("s1")], 0.0)
    assert rollout.phase is Phase.PAUSED and rollout.updated == frozenset()
    assert advance(s, resume(rollout, 1.0), [site("s1")], 1.0).updated == {"s1"}


def test_sites_in_parallel_zero_is_refused_but_read_back_from_an_older_store() -> None:
    with pytest.raises(DeploymentError) as info:
        spec(**{"sites-in-parallel": 0})
    assert info.value.errors == [
        ("strategy.sites-in-parallel",
         "must be at least 1 (leave it out to update all matching sites at once)"),
    ]  # fmt: skip
    stored = deployment_to_document(spec())
    assert "sites-in-parallel" not in stored["strategy"]
    stored["strategy"]["sites-in-parallel"] = 0
    assert parse_deployment(stored, stored=True).strategy.sites_in_parallel == 0


def test_a_failed_first_rollout_rolls_back_to_nothing() -> None:
    s = spec()
    rollout = advance(s, start_rollout(None, "1.0", ["s1"], 0.0), [site("s1")], 0.0)
    back = advance(s, rollout, [site("s1", failed="instance x is failed")], 1.0)
    assert back.phase is Phase.ROLLED_BACK and back.version_for("s1") is None
    assert back.message.endswith("rolled back (no earlier version: removed)")


def test_each_rollout_leaves_a_line_of_history() -> None:
    first = Rollout("1.0", Phase.DONE, started=0.0, since=10.0, updated=frozenset({"s1"}))
    second = start_rollout(first, "2.0", ["s1"], 20.0)
    third = start_rollout(second, "3.0", ["s1"], 30.0)
    assert [(h["target"], h["phase"], h["ended"]) for h in third.history] == [
        ("1.0", "done", 10.0),
        ("2.0", "superseded", 30.0),
    ]
    assert Rollout.from_json(third.to_json()) == third


def test_site_health_says_healthy_waiting_failed_or_offline_and_since_when() -> None:
    assert site_health(site("s", ready_since=5.0), 9.0) == ("healthy", 5.0)
    assert site_health(site("s", ready_since=None), 9.0) == ("waiting", None)
    assert site_health(site("s", failed="boom"), 9.0) == ("failed", None)
    assert site_health(site("s", online=False), 9.0) == ("offline", 9.0)
