"""A real `edge-control serve` process on a free loopback port, and helpers to talk to it: its
operator API (the project's `ControlClient`, or an aiohttp session for many calls at once) and
sites driven by the real `SyncClient` in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from control.cli.client import ApiError, Connection, ControlClient
from enforcer.link.enrollment import SiteIdentity, enroll
from enforcer.link.sync import SyncClient
from tests.support.processes import Exited, die_with_parent, free_port, stop_pid, wait_for

__all__ = [
    "ControlProcess",
    "Site",
    "api_error",
    "app_document",
    "dumps",
    "eventually",
    "run",
]


class ControlProcess:
    """`edge-control serve` with its own state directory; it dies with the process that
    started it. `python_args` go before ``-m`` (the fleet bench's ``-m cProfile -o FILE``)."""

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        python_args: tuple[str, ...] = (),
        database: str = "",
    ) -> None:
        self.root = root
        self.state_dir = root / "control"
        self.port = port or free_port()
        self.config = root / "control.toml"
        self.config.write_text(
            f'listen = "127.0.0.1:{self.port}"\n' + (f"database = {database!r}\n" if database else "")
        )
        self.extra_args = extra_args
        self.python_args = python_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "control.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self, *args: str, python_args: tuple[str, ...] = ()) -> list[str]:
        return [
            sys.executable,
            *python_args,
            "-m",
            "control.cli.main",
            "--config",
            str(self.config),
            "--state-dir",
            str(self.state_dir),
            *args,
        ]

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command("serve", *self.extra_args, python_args=self.python_args),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        try:
            wait_for(self._ready, timeout, f"edge-control on port {self.port}")
        except TimeoutError as exc:
            self.stop(kill=True)
            raise RuntimeError(f"control did not start ({exc}): {self.log.read_text()}") from None
        except BaseException:
            self.stop(kill=True)
            raise

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise Exited(f"control exited: {self.log.read_text()}")
        if not (self.state_dir / "admin-token").exists():
            return False
        self.client().get("/v1/health")  # ApiError until it answers
        return True

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        stop_pid(self.proc, 20, signal.SIGKILL if kill else signal.SIGTERM)
        self.proc = None

    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        t = self.process().cpu_times()
        return float(t.user + t.system)

    def rss_mb(self) -> float:
        return float(self.process().memory_info().rss) / 2**20

    @property
    def admin_token(self) -> str:
        return (self.state_dir / "admin-token").read_text().strip()

    def client(self, token: str | None = None) -> ControlClient:
        return ControlClient(
            Connection(
                self.url, self.admin_token if token is None else token, self.state_dir / "ca.pem"
            )
        )

    def session(self, limit: int = 64) -> aiohttp.ClientSession:
        """An operator session over aiohttp (for many concurrent calls; `client` otherwise)."""
        context = ssl.create_default_context(cafile=str(self.state_dir / "ca.pem"))
        return aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.admin_token}"},
            connector=aiohttp.TCPConnector(ssl=context, limit=limit),
        )

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One operator call over aiohttp: the JSON answer, or the text (metrics)."""
        async with self.session() as s, s.request(method, self.url + path, json=body) as r:
            if r.status >= 400:
                raise ApiError(await r.text(), r.status)
            if r.content_type.endswith("json"):
                return await r.json(content_type=None)
            return await r.text()

    def cli(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWARD_")}
        full_env.update(env or {})
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            env=full_env,
            input=stdin,
            timeout=60,
        )

    def cli_env(self, token: str | None = None) -> dict[str, str]:
        """The environment that points `edge-control` at this control, as an operator sets it."""
        return {
            "EDGEWARD_URL": self.url,
            "EDGEWARD_TOKEN": self.admin_token if token is None else token,
            "EDGEWARD_CA": str(self.state_dir / "ca.pem"),
        }

    def bundle(self, site: str, labels: dict[str, str] | None = None, ttl: float = 3600.0) -> str:
        answer = self.client().post(
            "/v1/enrollment/tokens", {"site": site, "labels": labels, "ttl": ttl}
        )
        return str(answer["bundle"])

    def push_app(self, name: str, version: str, image: str = "busybox") -> Any:
        return self.client().put(
            f"/v1/applications/{name}/versions/{version}", app_document(name, version, image)
        )

    def deploy(self, doc: dict[str, Any]) -> Any:
        return self.client().put(f"/v1/deployments/{doc['name']}", doc)


def app_document(name: str, version: str, image: str = "busybox") -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "services": [{"name": "main", "containers": [{"name": "main", "image": image}]}],
    }


def api_error(fn: Callable[[], Any]) -> ApiError:
    try:
        fn()
    except ApiError as e:
        return e
    raise AssertionError("the call did not fail")


class Site:
    """An enrolled site driven by a real SyncClient in this process."""

    def __init__(self, identity: SiteIdentity, state_dir: Path, **options: Any) -> None:
        self.identity = identity
        self.state_dir = state_dir
        self.options = options
        self.revision = 0
        self.applications: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.client: SyncClient | None = None
        self.task: asyncio.Task[None] | None = None
        self.report_ready = True

    @classmethod
    async def enroll(
        cls,
        control: ControlProcess,
        name: str,
        labels: dict[str, str] | None = None,
        **options: Any,
    ) -> Site:
        state_dir = control.root / "sites" / name
        identity = await enroll(control.bundle(name, labels), state_dir)
        return cls(identity, state_dir, **options)

    async def _on_desired(self, revision: int, applications: list[dict[str, Any]]) -> None:
        self.revision = revision
        self.applications = applications
        if self.client is not None and self.report_ready:
            self.client.set_status(
                [
                    {
                        "id": f"{a['name']}.main.0",
                        "app": a["name"],
                        "version": a["version"],
                        "service": "main",
                        "host": "h1",
                        "state": "running",
                        "ready": True,
                        "restarts": 0,
                    }
                    for a in applications
                ]
            )
        self.changed.set()

    @property
    def app_names(self) -> list[str]:
        return sorted(f"{a['name']}@{a['version']}" for a in self.applications)

    def start(self) -> SyncClient:
        options = {"poll_wait": 30.0, "backoff_base": 0.2, "backoff_cap": 1.0, **self.options}
        self.client = SyncClient(
            self.identity, on_desired=self._on_desired, state_dir=self.state_dir, **options
        )
        self.task = asyncio.create_task(self.client.run())
        return self.client

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        if self.client is not None:
            self.client.close()
            self.client = None

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; site has {self.app_names}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.2))


async def eventually(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 15.0,
    interval: float = 0.1,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def run(coro: Coroutine[Any, Any, Any], timeout: float = 90.0) -> Any:
    async def main() -> Any:
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            await asyncio.sleep(0.3)  # aiohttp before 3.9 closes TLS connections late

    return asyncio.run(main())
