"""Secret volume files: modes, atomic rotation in place, revocation, the tmpfs check."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from enforcer.reconcile.instances import Context, DesiredInstance, desired_instance
from enforcer.secrets.files import SecretFiles, mount_point_of, write_instance_files
from enforcer.shared.spec import parse_application

VALUE = "hunter2-very-secret"


def desired(
    root: Path, values: dict[tuple[str, str, str], str], iid: str = "a.s.0"
) -> DesiredInstance:
    doc = {
        "name": "a",
        "version": "1",
        "services": [
            {
                "name": "s",
                "volumes": [
                    {"name": "creds", "secret": {"vault": "v", "secret": "creds"}},
                    {"name": "one", "secret": {"vault": "v", "secret": "creds", "key": "user"}},
                ],
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "mounts": [
                            {"volume": "creds", "path": "/run/secrets/creds"},
                            {"volume": "one", "path": "/run/secrets/one"},
                        ],
                    }
                ],
            }
        ],
    }
    app = parse_application(doc)
    return desired_instance(
        app,
        app.services[0],
        iid,
        Context("site", "host"),
        instances_dir=str(root / "instances"),
        secrets=values,
        secrets_dir=str(root / "secrets"),
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_0400_in_0500_directories_one_per_key(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir(mode=0o700)
    d = desired(tmp_path, {("v", "creds", "api-key"): VALUE, ("v", "creds", "user"): "vision"})
    assert write_instance_files(d)
    base = tmp_path / "secrets" / "a.s.0"
    assert (base / "creds" / "api-key").read_text() == VALUE
    assert (base / "creds" / "user").read_text() == "vision"
    assert sorted(os.listdir(base / "one")) == ["user"]
    assert mode(base / "creds" / "api-key") == 0o400
    assert mode(base / "creds") == 0o500
    assert mode(base) == 0o500
    assert not write_instance_files(d)  # nothing to do the second time


def test_a_rotation_replaces_files_in_place_and_a_removed_key_goes(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir(mode=0o700)
    first = desired(tmp_path, {("v", "creds", "api-key"): VALUE, ("v", "creds", "user"): "u"})
    write_instance_files(first)
    vdir = tmp_path / "secrets" / "a.s.0" / "creds"
    dir_inode = vdir.stat().st_ino
    held = (vdir / "user").open()  # what a process in the container holds stays readable
    write_instance_files(desired(tmp_path, {("v", "creds", "api-key"): "rotated"}))
    assert (vdir / "api-key").read_text() == "rotated"
    assert not (vdir / "user").exists()
    assert vdir.stat().st_ino == dir_inode  # the bind-mounted directory is the same one
    assert held.read() == "u"
    held.close()
    staging = tmp_path / "secrets" / ".staging"
    assert os.listdir(staging) == []


def test_sync_removes_the_files_of_instances_no_longer_desired(tmp_path: Path) -> None:
    files = SecretFiles(tmp_path / "secrets")
    files.prepared = True  # as if on a tmpfs
    (tmp_path / "secrets").mkdir(mode=0o700)
    a = desired(tmp_path, {("v", "creds", "k"): VALUE}, "a.s.0")
    b = desired(tmp_path, {("v", "creds", "k"): VALUE}, "a.s.1")
    assert sorted(files.sync({"a.s.0": a, "a.s.1": b})) == ["a.s.0", "a.s.1"]
    assert files.sync({"a.s.0": a}, held=["a.s.1"]) == []  # held: left as it is
    assert files.sync({"a.s.0": a}) == ["a.s.1"]
    assert sorted(os.listdir(tmp_path / "secrets")) == [".staging", "a.s.0"]


def test_the_mount_holding_a_path_is_found_in_proc_mounts() -> None:
    mounts = (
        "/dev/vda / ext4 rw 0 0\n"
        "tmpfs /run tmpfs rw 0 0\n"
        "tmpfs /srv/with\\040space tmpfs rw 0 0\n"
        "/dev/vdb /run/edgeward/data ext4 rw 0 0\n"
    )
    assert mount_point_of(Path("/run/edgeward/secrets"), mounts) == ("/run", "tmpfs")
    assert mount_point_of(Path("/run/edgeward/data/x"), mounts) == ("/run/edgeward/data", "ext4")
    assert mount_point_of(Path("/srv/with space/s"), mounts) == ("/srv/with space", "tmpfs")
    assert mount_point_of(Path("/running"), mounts) == ("/", "ext4")


def test_a_directory_already_on_a_tmpfs_is_used_as_it_is(tmp_path: Path) -> None:
    root = tmp_path / "secrets"
    fake = tmp_path / "mounts"
    fake.write_text(f"tmpfs {tmp_path} tmpfs rw 0 0\n")
    files = SecretFiles(root)
    assert files.sync({}) == []  # nothing is touched before the directory is prepared
    files.prepare(fake)
    assert (files.error, files.mounted, files.prepared) == ("", False, True)
    assert mode(root) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_tmpfs_is_mounted_where_there_is_none(tmp_path: Path) -> None:
    root = Path("/tmp") / f"ew-secrets-test-{os.getpid()}"
    files = SecretFiles(root)
    try:
        files.prepare()
        assert files.error == ""
        assert files.mounted
        assert mount_point_of(root, Path("/proc/mounts").read_text()) == (str(root), "tmpfs")
        again = SecretFiles(root)
        again.prepare()
        assert not again.mounted  # already a tmpfs: not mounted twice
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
        root.rmdir()


def test_without_a_tmpfs_secret_volumes_are_refused_with_the_reason(tmp_path: Path) -> None:
    fake = tmp_path / "mounts"
    fake.write_text(f"/dev/vda {tmp_path} ext4 rw 0 0\n")
    files = SecretFiles(tmp_path / "no" / "such")
    (tmp_path / "no").mkdir()
    (tmp_path / "no").chmod(0o500)  # nothing can be made here by a non-root user
    try:
        if os.geteuid() == 0:
            files.root = Path("/proc/edgeward-no-tmpfs-here")  # mkdir fails even for root
        files.prepare(fake)
    finally:
        (tmp_path / "no").chmod(0o700)
    assert files.error.startswith(f"cannot put a tmpfs on {files.root}: ")
    assert files.sync({}) == []
