"""The fleet in control's metrics: each site's link, sites, instances and deployments counted."""

from __future__ import annotations

from typing import Any

from control.fleet.deployments import parse_deployment
from control.fleet.metrics import fleet_families
from control.fleet.rollout import Phase, Rollout
from control.fleet.state import DeploymentState, Fleet
from control.model import Deployment, Site


def deployment(name: str, rollout: Rollout | None) -> DeploymentState:
    doc: dict[str, Any] = {"name": name, "application": "shop", "version": "latest",
                           "placement": {"match-site-labels": "x = y"}}  # fmt: skip
    record = Deployment(name, "system", doc, 0.0, 0.0)
    return DeploymentState(record, parse_deployment(doc), rollout)


def samples(text: list[str]) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in text if not line.startswith("#"))


def test_each_sites_link_and_the_fleets_counts_are_gauges_with_labels() -> None:
    fleet = Fleet()
    running = {"id": "shop.main.0", "app": "shop", "state": "running"}
    fleet.sites = {
        "store-a": Site("store-a", {}, 0.0, enrolled=1.0, last_contact=1700000000.25,
                        status={"revision": 0, "instances": [running, {**running, "state": "backoff"}]}),
        "store-b": Site("store-b", {}, 0.0, enrolled=1.0, revision=3, status={"revision": 2}),
        'odd"\\name': Site('odd"\\name', {}, 0.0),
        "gone": Site("gone", {}, 0.0, enrolled=1.0, revoked=True),
    }  # fmt: skip
    fleet.desired.polling.add("store-a")
    fleet.deployments = {
        "a": deployment("a", Rollout("2", Phase.ROLLING)),
        "b": deployment("b", Rollout("1", Phase.DONE)),
        "c": deployment("c", None),
    }
    lines = fleet_families(fleet)
    got = samples(lines)
    assert got['edgeward_control_site_connected{site="store-a"}'] == "1"
    assert got['edgeward_control_site_connected{site="store-b"}'] == "0"
    assert got['edgeward_control_site_connected{site="odd\\"\\\\name"}'] == "0"
    assert got['edgeward_control_site_in_sync{site="store-a"}'] == "1"
    assert got['edgeward_control_site_in_sync{site="store-b"}'] == "0"
    assert (
        got['edgeward_control_site_last_contact_timestamp_seconds{site="store-a"}']
        == "1700000000.25"
    )
    assert not any(
        k.startswith("edgeward_control_site_last_contact") and "store-b" in k for k in got
    )
    assert {k: v for k, v in got.items() if "sites_by_state" in k} == {
        'edgeward_control_sites_by_state{state="enrolled"}': "2",
        'edgeward_control_sites_by_state{state="pending"}': "1",
        'edgeward_control_sites_by_state{state="revoked"}': "1",
    }
    assert {k: v for k, v in got.items() if "instances_by_state" in k} == {
        'edgeward_control_instances_by_state{state="backoff"}': "1",
        'edgeward_control_instances_by_state{state="running"}': "1",
    }
    phases = {k: v for k, v in got.items() if "deployments_by_phase" in k}
    assert phases['edgeward_control_deployments_by_phase{phase="rolling"}'] == "1"
    assert phases['edgeward_control_deployments_by_phase{phase="done"}'] == "1"
    assert phases['edgeward_control_deployments_by_phase{phase="waiting"}'] == "1"
    assert phases['edgeward_control_deployments_by_phase{phase="paused"}'] == "0"
    families = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(families) == len(set(families)) == 6
