"""A PostgreSQL cluster of the suite's own: Debian's `postgresql` 15, made with `initdb` in a
temporary directory, its server listening only on a Unix socket in that directory, started as
our child and stopped by its pid (root runs it as the `postgres` user: PostgreSQL refuses root).

One cluster serves a test session; each test (or module) gets a fresh database of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.support.ci import running
from tests.support.control import ControlProcess
from tests.support.processes import Exited, MissingPart, die_with_parent, stop_pid, wait_for

__all__ = [
    "PostgresCluster",
    "control_processes",
    "postgres_cluster",
    "restarted",
    "stop_all",
]

BIN = Path("/usr/lib/postgresql/15/bin")
PORT = 5432  # the socket is .s.PGSQL.5432 in the cluster's own directory: no clash
SUPERUSER = "edgeward"

_names = itertools.count(1)


class PostgresCluster:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.password = secrets.token_urlsafe(12)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "postgres.log"
        self.user = "postgres" if os.geteuid() == 0 else None

    @property
    def socket_dir(self) -> str:
        return str(self.root)

    def url(self, database: str, password: str | None = None) -> str:
        """The URL of `database` over the cluster's socket (its password, unless given)."""
        secret = quote(self.password if password is None else password, safe="")
        return f"postgresql://{SUPERUSER}:{secret}@/{database}?host={self.root}&port={PORT}"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            args, user=self.user, capture_output=True, check=False, cwd=self.root, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.decode(errors='replace')}")

    def start(self) -> None:
        if not (BIN / "initdb").exists():
            raise MissingPart("PostgreSQL 15 is not installed (apt-get install postgresql)")
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        if not self.data.exists():
            pwfile = self.root / "pw"
            pwfile.write_text(self.password + "\n")
            if self.user is not None:
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            self._run(
                str(BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
            pwfile.unlink()
        self.resume()

    def resume(self) -> None:
        """Start the server on the existing cluster (after `start`, and after `halt`)."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "postgres"),
                    "-D",
                    str(self.data),
                    "-k",
                    str(self.root),
                    "-p",
                    str(PORT),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                ],
                user=self.user,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        wait_for(self._ready, 60, "PostgreSQL")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise Exited(f"postgres exited: {self.log.read_text()[-2000:]}")
        done = subprocess.run(
            [str(BIN / "pg_isready"), "-h", str(self.root), "-p", str(PORT), "-q"], check=False
        )
        return done.returncode == 0

    def halt(self) -> None:
        """Stop the server (fast shutdown: clients are cut off); `resume` starts it again."""
        if self.proc is not None:
            stop_pid(self.proc, 30, signal.SIGINT)
            self.proc = None

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql; its output (unaligned, tuples only)."""
        done = subprocess.run(
            [
                str(BIN / "psql"),
                "-h",
                str(self.root),
                "-p",
                str(PORT),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                statement,
            ],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {statement!r}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode().strip()

    @staticmethod
    def name_of(url: str) -> str:
        """The database a URL of `url`/`new_database` names."""
        return urlsplit(url).path.lstrip("/")

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; its URL."""
        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL cluster (import this fixture into the test modules using it)."""
    with running(PostgresCluster()) as cluster:
        yield cluster


@contextlib.contextmanager
def restarted(cluster: PostgresCluster) -> Iterator[None]:
    """The server stopped for the block, then started again on the same data."""
    cluster.halt()
    try:
        yield
    finally:
        cluster.resume()


def control_processes(
    cluster: PostgresCluster, root: Path, count: int, public_url: str = ""
) -> list[ControlProcess]:
    """`count` control processes serving one fresh database: the first makes the CA, master
    key and admin token, the others start from a copy of its state directory (as each control
    host gets one). Started; stop them with `stop_all`."""
    url = cluster.new_database("fleet")
    processes: list[ControlProcess] = []
    try:
        for n in range(count):
            home = root / f"control-{n}"
            home.mkdir(parents=True)
            process = ControlProcess(home, database=url)
            if public_url:  # behind a load balancer: bundles name it
                process.config.write_text(
                    process.config.read_text() + f"public-url = {public_url!r}\n"
                )
            if processes:
                shutil.copytree(processes[0].state_dir, process.state_dir)
            processes.append(process)
            process.start()
    except BaseException:
        stop_all(processes)
        raise
    return processes


def stop_all(processes: list[ControlProcess]) -> None:
    for process in processes:
        process.stop()
