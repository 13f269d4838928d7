"""The in-memory fleet: which tenant may deploy where, and when a site gets a new revision."""

from __future__ import annotations

import json
from typing import Any

from control.fleet.deployments import parse_deployment
from control.fleet.rollout import Phase, Rollout
from control.fleet.state import DeploymentState, Fleet
from control.model import AppVersion, Deployment, Site, Tenant


def fleet_with(*sites: Site) -> Fleet:
    fleet = Fleet()
    fleet.tenants.update(
        {
            "system": Tenant("system", None, 0.0),
            "acme": Tenant("acme", "system", 0.0),
            "acme-eu": Tenant("acme-eu", "acme", 0.0),
            "other": Tenant("other", "system", 0.0),
        }
    )
    fleet.sites.update({s.name: s for s in sites})
    fleet.apps[("vision", "1")] = AppVersion("vision", "1", "acme", {"name": "vision"}, "d", 1.0)
    return fleet


def deploy(fleet: Fleet, tenant: str, match: str) -> DeploymentState:
    name = f"d-{tenant}"
    doc: dict[str, Any] = {
        "name": name,
        "application": "vision",
        "version": "1",
        "placement": {"match-site-labels": match},
    }
    state = DeploymentState(
        Deployment(name, tenant, doc, 0.0, 0.0), parse_deployment(doc), Rollout("1", Phase.DONE)
    )
    fleet.deployments[state.record.name] = state
    return state


def site(name: str, tenants: list[str], **labels: str) -> Site:
    return Site(name=name, labels=dict(labels), created=0.0, tenants=tenants, enrolled=1.0)


def test_a_tenant_deploys_only_to_sites_assigned_to_it_or_its_ancestors() -> None:
    fleet = fleet_with(site("s1", ["acme"]), site("s2", ["other"]), site("s3", []))
    assert fleet.subtree("acme") == {"acme", "acme-eu"}
    assert [fleet.eligible(fleet.sites[n], "acme-eu") for n in ("s1", "s2", "s3")] == [
        True,
        False,
        False,
    ]
    assert all(fleet.eligible(s, "system") for s in fleet.sites.values())
    fleet.sites["s1"].revoked = True
    assert not fleet.eligible(fleet.sites["s1"], "system")


def test_only_sites_whose_applications_change_get_a_new_revision() -> None:
    fleet = fleet_with(site("s1", ["acme"], customer="acme"), site("s2", ["acme"]))
    assert {n for n, _, _ in fleet.recompute()} == {"s1", "s2"}  # first computation
    assert fleet.recompute() == []
    deploy(fleet, "acme", "customer = acme")
    assert [(n, r) for n, r, _ in fleet.recompute()] == [("s1", 2)]
    body = json.loads(fleet.desired_body(fleet.sites["s1"]))
    assert body["revision"] == 2
    assert [(a["name"], a["version"], a["tenant"]) for a in body["applications"]] == [
        ("vision", "1", "acme")
    ]
    fleet.sites["s2"].labels["customer"] = "acme"
    assert [n for n, _, _ in fleet.recompute(["s2"])] == ["s2"]
    assert json.loads(fleet.desired_body(fleet.sites["s2"]))["applications"][0]["spec"] == {
        "name": "vision"
    }
