"""GPUs are assigned, not counted: the scheduler gives each instance GPUs of its own, an
instance keeps them, and they reach Docker as NVIDIA device ids or as render nodes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import docker
import pytest

from enforcer.devices.inventory import Inventory, inventory_from_properties
from enforcer.devices.passthrough import device_nodes_for, gpu_passthrough, gpu_request
from enforcer.reconcile.instances import Context, desired_instance
from enforcer.schedule.hosts import HostInfo, HostState, host_state
from enforcer.schedule.scheduler import Schedule, schedule
from enforcer.shared.spec import parse_application
from enforcer.shared.spec.model import Application
from enforcer.site.store import Store

DATA = Path(__file__).resolve().parent.parent / "data" / "udev"
A10 = ("0000:17:00.0", "0000:65:00.0")  # the two NVIDIA A10 of the recorded server


def recorded(name: str) -> Inventory:
    devices = json.loads((DATA / f"{name}.json").read_text())["devices"]
    return inventory_from_properties(devices, [])


def gpu_app(name: str, replicas: int = 1, gpus: int = 1, priority: str = "normal") -> Application:
    return parse_application(
        {
            "name": name,
            "version": "1",
            "services": [
                {
                    "name": "work",
                    "replicas": replicas,
                    "priority": priority,
                    "placement": {"gpus": gpus},
                    "containers": [{"name": "main", "image": "busybox"}],
                }
            ],
        }
    )


def host_of(inventory: Inventory) -> HostState:
    return host_state(HostInfo("h1", (), inventory, 8.0, 16 * 1024**3))


def run(
    apps: list[Application], host: HostState, before: Schedule | None = None
) -> Schedule:
    current = dict(before.assignments) if before else {}
    return schedule([host], apps, current, before.gpus if before else None)


def test_two_instances_with_one_gpu_each_get_different_nvidia_gpus() -> None:
    inventory = recorded("nvidia-a10-server")
    sched = run([gpu_app("vision", replicas=2)], host_of(inventory))
    assert sched.gpus == {"vision.work.0": (A10[0],), "vision.work.1": (A10[1],)}
    app = gpu_app("vision", replicas=2)
    ids = []
    for iid in ("vision.work.0", "vision.work.1"):
        assigned = gpu_passthrough(inventory, sched.gpus[iid])
        desired = desired_instance(
            app, app.services[0], iid, Context("s", "h1"), instances_dir="/tmp/i",
            devices=tuple(device_nodes_for(app.services[0].placement, inventory, assigned)),
            gpus=assigned,
        )  # fmt: skip
        owner = desired.owner
        assert desired.gpus == sched.gpus[iid]
        assert owner.devices == ()  # NVIDIA GPUs go as device requests, not nodes
        request = docker.types.DeviceRequest(**gpu_request(owner.gpus, owner.gpu_ids))
        ids.append(request["DeviceIDs"])
    assert ids == [["0"], ["1"]]


def test_instances_of_other_vendors_get_the_render_node_of_their_own_gpu() -> None:
    inventory = recorded("amd-radeon-workstation")
    sched = run([gpu_app("a"), gpu_app("b")], host_of(inventory))
    nodes = {
        iid: device_nodes_for(gpu_app("a").services[0].placement, inventory,
                              gpu_passthrough(inventory, gpus))
        for iid, gpus in sched.gpus.items()
    }  # fmt: skip
    assert nodes == {"a.work.0": ["/dev/dri/renderD128"], "b.work.0": ["/dev/dri/renderD129"]}


def test_on_a_hybrid_host_each_instance_gets_its_gpu_the_way_its_vendor_needs() -> None:
    inventory = recorded("hybrid-laptop")
    sched = run([gpu_app("a"), gpu_app("b")], host_of(inventory))
    intel = gpu_passthrough(inventory, sched.gpus["a.work.0"])
    nvidia = gpu_passthrough(inventory, sched.gpus["b.work.0"])
    assert (intel.nodes, intel.nvidia_ids) == (("/dev/dri/renderD128",), ())
    assert (nvidia.nodes, nvidia.nvidia_ids) == ((), ("0",))


def test_an_instance_keeps_its_gpu_when_others_come() -> None:
    host = host_of(recorded("nvidia-a10-server"))
    first = run([gpu_app("zeta")], host)
    assert first.gpus == {"zeta.work.0": (A10[0],)}
    # "alpha" comes first in scheduling order; "zeta" keeps the GPU it has
    second = run([gpu_app("alpha"), gpu_app("zeta")], host, first)
    assert second.gpus == {"alpha.work.0": (A10[1],), "zeta.work.0": (A10[0],)}
    # without what it had, it would be moved (and its container recreated)
    assert run([gpu_app("alpha"), gpu_app("zeta")], host).gpus["zeta.work.0"] == (A10[1],)


def test_a_new_instance_takes_a_gpu_no_one_had_before_one_that_another_may_want_back() -> None:
    host = host_of(recorded("nvidia-a10-server"))
    before = Schedule({"old.work.0": "h1"}, {}, (), {"old.work.0": (A10[0],)})
    sched = schedule([host], [gpu_app("new")], {}, before.gpus)
    assert sched.gpus == {"new.work.0": (A10[1],)}


def test_a_third_instance_waits_when_both_gpus_are_assigned() -> None:
    host = host_of(recorded("nvidia-a10-server"))
    sched = run([gpu_app("vision", replicas=3)], host)
    assert set(sched.gpus) == {"vision.work.0", "vision.work.1"}
    assert sched.pending == {"vision.work.2": ("h1: needs 1 GPU, has 0 free",)}


def test_a_preempting_instance_gets_the_gpu_its_victim_gave_up() -> None:
    host = host_of(recorded("nvidia-a10-server"))
    low = run([gpu_app("batch", replicas=2, priority="low")], host)
    sched = run([gpu_app("batch", replicas=2, priority="low"),
                 gpu_app("alarm", priority="critical")], host, low)  # fmt: skip
    assert sched.evicted == ("batch.work.1",)
    assert sched.gpus == {"alarm.work.0": (A10[1],), "batch.work.0": (A10[0],)}
    assert len({g for ids in sched.gpus.values() for g in ids}) == 2


def test_an_instance_with_two_gpus_gets_two_and_hosts_without_ids_count_by_number() -> None:
    sched = run([gpu_app("big", gpus=2)], host_of(recorded("nvidia-a10-server")))
    assert sched.gpus == {"big.work.0": A10}
    counted = HostState("h1", gpus=2, cpus=8.0, memory=16 * 1024**3)
    assert run([gpu_app("a"), gpu_app("b")], counted).gpus == {
        "a.work.0": ("0",), "b.work.0": ("1",),
    }  # fmt: skip


def test_a_gpu_name_that_is_not_on_the_host_is_refused() -> None:
    with pytest.raises(ValueError, match=r"GPU 0000:99:00\.0 is not on this host"):
        gpu_passthrough(recorded("nvidia-a10-server"), ["0000:99:00.0"])


def test_the_gpu_assignments_are_kept_in_the_site_store(tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        store = Store(tmp_path / "enforcer.db")
        await store.open()
        assert await store.gpu_assignments() == {}
        await store.put_gpu_assignments({"vision.work.0": (A10[1],)})
        await store.close()
        again = Store(tmp_path / "enforcer.db")
        await again.open()
        try:
            return await again.gpu_assignments()
        finally:
            await again.close()

    assert asyncio.run(scenario()) == {"vision.work.0": (A10[1],)}


def test_containers_without_gpu_ids_keep_the_config_hash_they_had() -> None:
    """The hashes of the version before GPU ids: an upgrade recreates no container."""
    ctx = Context("s", "h1")
    app0, app1 = gpu_app("plain", gpus=0), gpu_app("plain", gpus=1)
    plain = desired_instance(app0, app0.services[0], "plain.work.0", ctx, instances_dir="/i")
    anyone = desired_instance(app1, app1.services[0], "plain.work.0", ctx, instances_dir="/i",
                              gpus=1)  # fmt: skip
    assert plain.owner.config_hash("img") == "f66212de63227b45e046432008ab441a"
    assert anyone.owner.config_hash("img") == "d5d743cfc6cc610d39efd8656f822b2e"
    pinned = desired_instance(
        app1, app1.services[0], "plain.work.0", ctx, instances_dir="/i",
        gpus=gpu_passthrough(recorded("nvidia-a10-server"), [A10[1]]),
    )  # fmt: skip
    assert pinned.owner.gpu_ids == ("1",) and anyone.owner.gpu_ids == ()
    assert pinned.owner.config_hash("img") != anyone.owner.config_hash("img")
