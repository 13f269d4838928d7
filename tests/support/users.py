"""Running a piece of a test as an unprivileged user, for checks that root would pass anyway."""

from __future__ import annotations

import codecs
import contextlib
import os
import pickle
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

__all__ = ["as_user", "open_dir"]

T = TypeVar("T")


def as_user(fn: Callable[[], T], user: str = "nobody") -> T:
    """`fn()` in a forked child that gave up root for `user` (its uid and gid, no groups); its
    return value, or an AssertionError with what it raised. Not root already: `fn()` here."""
    if os.geteuid() != 0:
        return fn()
    entry = pwd.getpwnam(user)
    for codec in ("ascii", "latin-1", "utf-8", "idna"):  # the child may not read /root's stdlib
        codecs.lookup(codec)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test runner
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            data = pickle.dumps((True, fn()))
        except BaseException as exc:
            data = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
        with os.fdopen(write, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    ok, value = pickle.loads(data)
    if not ok:
        raise AssertionError(f"as {user}: {value}")
    return value  # type: ignore[no-any-return]


@contextlib.contextmanager
def open_dir() -> Iterator[Path]:
    """A fresh directory under /tmp that every user may enter, read and write; removed after."""
    path = Path(tempfile.mkdtemp(prefix="ew-open-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
