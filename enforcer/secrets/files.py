"""Secret volumes on the host: one file per key, on a tmpfs, bind-mounted read-only.

Layout: ``<dir>/<instance>/<volume>/<key>``, files 0400 and directories 0500, so that only
root (Docker's bind mounts, the containers' root user) reads them. ``<dir>`` must be on a tmpfs
(secret values never reach a disk): `SecretFiles.prepare` mounts one there unless it already is
on one (checked in /proc/mounts) — at start when the directory exists, else when a secret
volume is first needed, so an enforcer without secrets mounts nothing. A file is replaced
atomically (written under ``<dir>/.staging`` and renamed over the old one), so a rotation
shows in running containers through the bind mount of its directory; revocation removes the
files.

File contents never reach a log line or an exception message here.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import secrets
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from enforcer.reconcile.instances import DesiredInstance

__all__ = ["SecretFiles", "mount_point_of", "write_instance_files"]

log = logging.getLogger(__name__)

TMPFS_TYPES = ("tmpfs", "ramfs")
TMPFS_SIZE = "64m"
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
STAGING = ".staging"


def _unescape(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_point_of(path: Path, mounts: str) -> tuple[str, str]:
    """(mount point, file system type) of the mount that holds `path`, from /proc/mounts text."""
    target = str(path)
    best = ("/", "")
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point, fstype = _unescape(parts[1]), parts[2]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):  # the later of equal mounts is on top
            best = (point, fstype)
    return best


def _mount_tmpfs(path: Path) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    options = f"mode=0700,size={TMPFS_SIZE}".encode()
    if libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", flags, options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def _writable(directory: Path) -> Iterator[None]:
    """Root writes into 0500 directories anyway; anyone else opens them for the moment."""
    if os.geteuid() == 0:
        yield
        return
    os.chmod(directory, 0o700)
    try:
        yield
    finally:
        os.chmod(directory, 0o500)


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    if os.geteuid() != 0:
        for root, dirs, _ in os.walk(path):
            for d in [root, *(os.path.join(root, d) for d in dirs)]:
                with contextlib.suppress(OSError):
                    os.chmod(d, 0o700)
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(root, name))
        for name in dirs:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(os.path.join(root, name))
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(path)


def _volume_dirs(desired: DesiredInstance) -> set[str]:
    """The secret volumes the instance's containers mount (directories under secrets_dir)."""
    prefix = desired.secrets_dir + "/"
    return {
        m.source[len(prefix) :]
        for c in desired.containers
        for m in c.mounts
        if m.kind == "bind" and m.source.startswith(prefix)
    }


def write_instance_files(desired: DesiredInstance) -> bool:
    """Bring the instance's secret volumes to exactly its `secret_files`; True if anything
    changed. Unchanged files are left alone (their inode too)."""
    if not desired.secrets_dir:
        return False
    base = Path(desired.secrets_dir)
    staging = base.parent / STAGING
    staging.mkdir(mode=0o700, exist_ok=True)
    changed = False
    if not base.is_dir():
        base.mkdir(mode=0o500)
        changed = True
    wanted: dict[str, dict[str, str]] = {v: {} for v in _volume_dirs(desired)}
    for f in desired.secret_files:
        wanted.setdefault(f.volume, {})[f.name] = f.data
    with _writable(base):
        for entry in os.listdir(base):
            if entry not in wanted:
                _remove_tree(base / entry)
                changed = True
        for volume, files in wanted.items():
            vdir = base / volume
            if not vdir.is_dir():
                vdir.mkdir(mode=0o500)
                changed = True
            changed = _write_volume(vdir, files, staging) or changed
    return changed


def _write_volume(vdir: Path, files: Mapping[str, str], staging: Path) -> bool:
    changed = False
    with _writable(vdir):
        for name in os.listdir(vdir):
            if name not in files:
                os.unlink(vdir / name)
                changed = True
        for name, data in files.items():
            target = vdir / name
            raw = data.encode()
            try:
                if target.read_bytes() == raw and (target.stat().st_mode & 0o777) == 0o400:
                    continue
            except OSError:
                pass
            tmp = staging / secrets.token_hex(8)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(raw)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            changed = True
    return changed


class SecretFiles:
    """The secret volumes of every instance of this host under one tmpfs directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.error = ""  # why secret volumes cannot be used here ('' when they can)
        self.mounted = False  # this process mounted the tmpfs
        self.prepared = False

    def ensure(self) -> str:
        """'' when secret volumes can be used, else why not (prepared on first use)."""
        if not self.prepared:
            self.prepare()
        return self.error

    def prepare(self, mounts_file: Path = Path("/proc/mounts")) -> None:
        """Make sure `root` exists (0700) and is on a tmpfs, mounting one when it is not."""
        self.prepared = True
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            root = self.root.resolve()
            _, fstype = mount_point_of(root, mounts_file.read_text())
            if fstype not in TMPFS_TYPES:
                _mount_tmpfs(root)
                self.mounted = True
                log.info("mounted a tmpfs for secret volumes on %s", root)
            os.chmod(root, 0o700)
            self.error = ""
        except OSError as exc:
            reason = exc.strerror or str(exc)
            self.error = f"cannot put a tmpfs on {self.root}: {reason}"
            log.error("secret volumes unavailable: %s", self.error)

    def sync(self, desired: Mapping[str, DesiredInstance], held: Collection[str] = ()) -> list[str]:
        """Write the secret files of every desired instance, remove those of the others but
        the `held` ones (left as they are); the instances whose files changed."""
        if not self.prepared or self.error or not self.root.is_dir():
            return []
        changed = []
        keep = {STAGING, *held}
        for iid, d in desired.items():
            if not d.secrets_dir or Path(d.secrets_dir).parent != self.root:
                continue
            keep.add(Path(d.secrets_dir).name)
            try:
                if write_instance_files(d):
                    changed.append(iid)
            except OSError as exc:
                log.error("instance %s: cannot write its secret files: %s", iid, exc.strerror)
        for entry in os.listdir(self.root):
            if entry not in keep:
                _remove_tree(self.root / entry)
                changed.append(entry)
        return changed
