"""The images a host of a multi-host site pulls ahead of time: those of every service it could
run (labels, devices, GPUs, total CPUs and memory), whatever runs where now."""

from __future__ import annotations

from enforcer.schedule.hosts import HostState
from enforcer.shared.spec.parse import parse_application
from enforcer.site.cluster.prepull import images_for
from tests.support.apps import app, sleeper


def test_a_host_pulls_the_images_of_the_services_it_qualifies_for() -> None:
    apps = {
        "a": parse_application(
            app(
                "a",
                sleeper("any", "reg:5000/any:1", replicas=1),
                sleeper("cam", "reg:5000/cam:1", placement={"devices": ["camera"]}),
                sleeper("eu", "reg:5000/eu:1", placement={"match-host-labels": "region = eu"}),
                sleeper("big", "reg:5000/big:1", resources={"memory": "64Gi"}),
            )
        )
    }
    plain = HostState("h1", memory=8 << 30, cpus=4)
    camera = HostState("h2", (("region", "eu"),), frozenset({"camera"}), memory=8 << 30, cpus=4)
    assert images_for(plain, apps) == {"reg:5000/any:1"}
    assert images_for(camera, apps) == {"reg:5000/any:1", "reg:5000/cam:1", "reg:5000/eu:1"}
