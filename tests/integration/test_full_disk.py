"""A full disk under the enforcer's or control's state directory: a change that cannot be
stored is refused with one message that says so, nothing that runs or was stored is disturbed,
and the change goes through once there is room again. The state directory is a small tmpfs of
the test's, filled to the last byte."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from enforcer.cli.client import Client
from tests.support.apps import app, container, service, sleeper
from tests.support.ci import running
from tests.support.control import ControlProcess
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine
from tests.support.postgres import PostgresCluster

DISK = "8m"


@contextlib.contextmanager
def small_disk(directory: Path, size: str = DISK) -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                   check=True)  # fmt: skip
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Write zeros into `directory` until its file system refuses: it is full."""
    filler = directory / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


def with_a_big_setting(name: str, image: str) -> dict[str, object]:
    """An application whose document alone needs more than any slack a full disk has left."""
    main = container("main", image, "sleep", "100000")
    main["env"] = {f"SETTING_{n}": "x" * 4000 for n in range(64)}  # 256 KB
    return app(name, service("s", main))


@pytest.fixture()
def enforcer_on_a_small_disk(engine: DockerEngine) -> Iterator[EnforcerProc]:
    root = Path(tempfile.mkdtemp(prefix="disk-", dir="/tmp"))
    proc = EnforcerProc(root, engine.url)
    with small_disk(proc.state_dir):
        try:
            proc.start()
            yield proc
        finally:
            (proc.state_dir / "filler").unlink(missing_ok=True)
            for name in proc.app_names():
                proc.cli("rm", name)
            proc.stop()
            proc.remove_firewall()
            proc.unmount_secrets()
    shutil.rmtree(root, ignore_errors=True)


def test_a_change_the_full_disk_cannot_hold_is_refused_saying_so_and_goes_through_after(
    enforcer_on_a_small_disk: EnforcerProc, test_image: str
) -> None:
    enf = enforcer_on_a_small_disk
    enf.apply(app("shop", sleeper("till", test_image)))
    enf.wait_running("shop.till.0")
    filler = fill(enf.state_dir)

    big = yaml.safe_dump(with_a_big_setting("big", test_image))
    refused = enf.cli("apply", "-f", "-", input=big)
    assert refused.returncode != 0
    message = refused.stderr.strip()
    assert "database or disk is full" in message and "nothing was changed" in message, message
    assert str(enf.state_dir) in message and len(message.splitlines()) == 1, message
    assert enf.process().is_running()
    running = enf.wait_running("shop.till.0")
    assert set(running) == {"shop.till.0"}  # nothing of the refused application
    assert [a["name"] for a in Client(enf.socket, timeout=10).applications()] == ["shop"]

    filler.unlink()  # room again: the same change goes through
    enf.cli("apply", "-f", "-", input=big).check_returncode()
    enf.wait_running("shop.till.0", "big.s.0")


def test_control_on_a_full_disk_refuses_a_push_saying_so_keeps_what_it_has_and_takes_it_after(
    tmp_path: Path,
) -> None:
    control = ControlProcess(tmp_path)
    with small_disk(control.state_dir):
        control.start()
        try:
            refused_then_taken(control, tmp_path, control.state_dir, "database or disk is full")
        finally:
            control.stop()


def test_control_on_postgresql_whose_disk_is_full_refuses_a_push_saying_so_then_takes_it(
    tmp_path: Path,
) -> None:
    cluster = PostgresCluster()  # its data, socket and log on a tmpfs of their own
    with small_disk(cluster.root, "160m"), running(cluster):
        control = ControlProcess(tmp_path, database=cluster.new_database())
        control.start()
        try:
            refused_then_taken(control, tmp_path, cluster.root, "No space left on device")
        finally:
            control.stop()
    shutil.rmtree(cluster.root, ignore_errors=True)


def refused_then_taken(control: ControlProcess, tmp_path: Path, disk: Path, reason: str) -> None:
    """With `disk` (where control's database keeps its data) full, a push is refused with one
    line giving `reason` and "nothing was changed"; reading goes on; with room, it is taken."""
    env = control.cli_env()
    spec = tmp_path / "big.yaml"
    spec.write_text(yaml.safe_dump(with_a_big_setting("big", "busybox")))
    control.push_app("small", "1")
    filler = fill(disk)

    refused = control.cli("app", "push", "-f", str(spec), env=env)
    assert refused.returncode != 0
    message = refused.stderr.strip()
    assert reason in message, message
    assert "nothing was changed" in message and len(message.splitlines()) == 1, message
    listed = control.cli("app", "ls", "-o", "json", env=env)
    assert listed.returncode == 0, listed.stderr  # reading goes on
    assert [a["name"] for a in json.loads(listed.stdout)] == ["small"]
    assert control.process().is_running()

    filler.unlink()
    pushed = control.cli("app", "push", "-f", str(spec), env=env)
    assert pushed.returncode == 0, pushed.stderr
