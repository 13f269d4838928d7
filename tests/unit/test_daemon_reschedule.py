"""Reacting to change while busy: a device change reschedules under the daemon's lock, after
an `apply` in progress, so that the last desired state handed on is never a stale one.

The real `Daemon` with its store; the reconciler's `set_desired` and the secret files' sync
are recorded (no engine is needed for what is decided here)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pytest

from enforcer.config.load import parse_config
from enforcer.daemon import Daemon
from enforcer.facade import InstanceStatus
from enforcer.reconcile.instances import DesiredInstance

LOOP = {"DEVPATH": "/devices/virtual/block/loop9", "SUBSYSTEM": "block", "DEVNAME": "/dev/loop9"}
DISK_APP = {
    "name": "disk",
    "version": "1",
    "services": [
        {
            "name": "s",
            "placement": {"devices": ["scratch"]},
            "containers": [{"name": "main", "image": "busybox"}],
        }
    ],
}


def daemon_in(root: Path) -> Daemon:
    config = parse_config(
        f'[docker]\nhost = "unix://{root}/no-engine.sock"\n'
        f'[secrets]\ndir = "{root}/secrets"\n'
        '[[devices.rule]]\nlabel = "scratch"\n'
        'match = { SUBSYSTEM = "block", DEVNAME = "/dev/loop9" }\n',
        root / "enforcer.toml",
        state_dir=root / "state",
    )
    return Daemon(config)


def test_a_device_change_during_an_apply_reschedules_after_it_never_alongside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = daemon_in(tmp_path)
    handed: list[tuple[list[str], dict[str, str], tuple[str, ...]]] = []
    inside, most = 0, 0
    count = threading.Lock()
    applying = threading.Event()

    def set_desired(
        desired: Mapping[str, DesiredInstance],
        pending: Mapping[str, InstanceStatus],
        apps: Any,
        held: Any = None,
    ) -> None:
        devices = tuple(d for i in desired.values() for d in i.owner.devices)
        handed.append((sorted(desired), {k: v.state.value for k, v in pending.items()}, devices))

    def slow_sync(desired: Mapping[str, DesiredInstance], held: Collection[str] = ()) -> list[str]:
        nonlocal inside, most
        with count:
            inside += 1
            most = max(most, inside)
        applying.set()
        time.sleep(0.3)  # a reschedule in the middle of its work
        with count:
            inside -= 1
        return []

    monkeypatch.setattr(daemon.reconciler, "set_desired", set_desired)
    monkeypatch.setattr(daemon.secret_files, "sync", slow_sync)

    async def scenario() -> None:
        await daemon.store.open()
        await daemon.events_log.open()
        try:
            apply = asyncio.create_task(daemon.apply(DISK_APP))
            assert await asyncio.to_thread(applying.wait, 5)
            daemon.devices.handle_event("add", LOOP)  # the disk appears while apply works
            await apply
            deadline = time.monotonic() + 5
            while len(handed) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.4)  # nothing more comes
        finally:
            await daemon.devices.stop()
            await daemon.store.close()
            daemon.runtime.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert most == 1  # never two reschedules at once
    assert handed == [
        ([], {"disk.s.0": "pending"}, ()),  # the apply's, made before the disk was there
        (["disk.s.0"], {}, ("/dev/loop9",)),  # then the device change's: the last word
    ]
