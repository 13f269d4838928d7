"""The site holds tenants to their quotas: admission of placed instances (pure)."""

from __future__ import annotations

from enforcer.schedule.quota import Quota, admit
from enforcer.schedule.scheduler import InstanceDemand
from enforcer.shared.spec.model import Placement, Priority, Resources


def demand(iid: str, tenant: str, cpus: float = 0.5, memory: int = 0, gpus: int = 0,
           priority: Priority = Priority.NORMAL) -> InstanceDemand:  # fmt: skip
    app, service, n = iid.split(".")
    return InstanceDemand(
        iid, app, service, tenant, priority, Placement(gpus=gpus), Resources(cpus, memory),
        ordinal=int(n),
    )  # fmt: skip


ACME = Quota.from_document({"tenant": "acme", "members": ["acme", "acme-eu"], "quota": {"cpus": 1}})


def test_instances_beyond_the_quota_stay_pending_with_the_reason() -> None:
    placed = [demand(f"web.s.{n}", "acme") for n in range(3)]
    admitted, refused = admit(placed, [ACME], frozenset())
    assert admitted == ["web.s.0", "web.s.1"]
    assert refused == {"web.s.2": "tenant acme quota: cpus would be 1.5, over 1"}


def test_sub_tenants_count_against_their_parents_quota_and_others_are_free() -> None:
    placed = [demand("a.s.0", "acme"), demand("b.s.0", "acme-eu"), demand("c.s.0", "acme-eu"),
              demand("z.s.0", "zeta", cpus=8)]  # fmt: skip
    admitted, refused = admit(placed, [ACME], frozenset())
    assert admitted == ["a.s.0", "b.s.0", "z.s.0"]
    assert set(refused) == {"c.s.0"}


def test_running_instances_keep_their_place_and_priority_orders_the_rest() -> None:
    placed = [demand("a.s.0", "acme"), demand("b.s.0", "acme"),
              demand("c.s.0", "acme", priority=Priority.CRITICAL)]  # fmt: skip
    admitted, refused = admit(placed, [ACME], frozenset({"b.s.0"}))
    assert admitted == ["b.s.0", "c.s.0"]  # running first, then the critical one
    assert set(refused) == {"a.s.0"}


def test_memory_and_gpus_are_bounded_and_unlisted_resources_are_unlimited() -> None:
    quota = Quota.from_document({"tenant": "t", "quota": {"memory": 256 << 20, "gpus": 1}})
    placed = [demand("a.s.0", "t", cpus=64, memory=200 << 20, gpus=1),
              demand("b.s.0", "t", memory=100 << 20), demand("c.s.0", "t", gpus=1)]  # fmt: skip
    admitted, refused = admit(placed, [quota], frozenset())
    assert admitted == ["a.s.0"]
    assert refused["b.s.0"] == "tenant t quota: memory would be 300Mi, over 256Mi"
    assert refused["c.s.0"] == "tenant t quota: gpus would be 2, over 1"
