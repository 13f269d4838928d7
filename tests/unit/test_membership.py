"""The leader is read from the membership record: the live controller with the freshest lease."""

from __future__ import annotations

import pytest

from enforcer.site.membership import leader_of
from enforcer.site.store import HostRecord

NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("hosts", "leader"),
    [
        ([], None),
        ([HostRecord("a", "10.0.0.1", "controller", NOW - 1)], "a"),
        ([HostRecord("a", "10.0.0.1", "controller", NOW - 16)], None),  # lease expired
        ([HostRecord("w", "10.0.0.9", "worker", NOW)], None),  # workers never lead
        (
            [
                HostRecord("a", "10.0.0.1", "controller", NOW - 20),
                HostRecord("b", "10.0.0.2", "controller", NOW - 2),
            ],
            "b",
        ),
        (
            [
                HostRecord("a", "10.0.0.1", "controller", NOW - 3),
                HostRecord("b", "10.0.0.2", "controller", NOW - 1),
            ],
            "b",
        ),
    ],
)
def test_the_leader_is_the_live_controller_with_the_freshest_lease(
    hosts: list[HostRecord], leader: str | None
) -> None:
    assert leader_of(hosts, NOW, ttl=15.0) == leader
