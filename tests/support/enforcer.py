"""A real `edge-enforcer run` process on an engine of ours, and its CLI.

The tests run it with short restart delays (`TEST_TUNING`); the benches with the enforcer's own
defaults (``tuning=""``). Its iptables chains outlive it by design (containers keep running), so
whoever stops it for good calls `remove_firewall` too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from enforcer.cli.client import Client
from tests.support.processes import Exited, stop_pid, wait_for

__all__ = ["TEST_TUNING", "EnforcerProc", "enforcer_command"]

TEST_TUNING = (
    '[restart]\ninitial-delay = "200ms"\nmax-delay = "3s"\nreset-after = "5s"\n'
    '[reconcile]\nresync-interval = "30s"\n'
)


# Hosts of one site that run in this machine's own network namespace cannot each own the site
# network's interface and routes there: only the namespaced hosts of tests/support/netns.py run it.
SHARED_NAMESPACE = "[network]\nsite-network = false\n"


def enforcer_command() -> list[str]:
    """`edge-enforcer` as this interpreter runs it."""
    return [sys.executable, "-m", "enforcer"]


@dataclass
class EnforcerProc:
    root: Path
    docker_url: str
    extra_config: str = ""
    host_labels: dict[str, str] = field(default_factory=dict)
    host_id: str = ""  # host-<root's name> unless given
    tuning: str = TEST_TUNING
    log_level: str = "DEBUG"
    proc: subprocess.Popen[bytes] | None = None
    ready_after: float = 0.0  # seconds from exec to an answering (or healthy) API
    netns: str = ""  # a network namespace to run in (`tests.support.netns`); "": the machine's
    site: str = "test-site"  # [site] name

    def __post_init__(self) -> None:
        self.host_id = self.host_id or f"host-{self.root.name}"

    @property
    def config_path(self) -> Path:
        return self.root / "enforcer.toml"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def socket(self) -> Path:
        return self.root / "api.sock"

    @property
    def log_path(self) -> Path:
        return self.root / "enforcer.log"

    @property
    def secrets_dir(self) -> Path:
        """Its own directory for secret volumes (a tmpfs it mounts when it first needs one)."""
        return self.root / "secrets"

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        labels = ", ".join(f'"{k}" = "{v}"' for k, v in self.host_labels.items())
        self.config_path.write_text(
            f'state-dir = "{self.state_dir}"\n'
            f'[docker]\nhost = "{self.docker_url}"\n'
            f'[api]\nsocket = "{self.socket}"\n'
            f'[host]\nid = "{self.host_id}"\nlabels = {{ {labels} }}\n'
            f'[site]\nname = "{self.site}"\n'
            f'[secrets]\ndir = "{self.secrets_dir}"\n' + self.tuning
            + ("" if self.netns or "[network]" in self.extra_config else SHARED_NAMESPACE)
            + self.extra_config  # last: tests append keys to its last table
        )

    def start(self, timeout: float = 30, healthy: bool = False) -> None:
        """Run the daemon; return once its API answers (and says healthy, with `healthy`)."""
        if not self.config_path.exists():
            self.write_config()
        env = dict(os.environ, EDGEWARD_LOG_LEVEL=self.log_level, PYTHONUNBUFFERED="1")
        env.pop("EDGEWARD_CONFIG", None)
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            enter = ["nsenter", f"--net=/var/run/netns/{self.netns}"] if self.netns else []
            self.proc = subprocess.Popen(
                [*enter, *enforcer_command(), "--config", str(self.config_path), "run"],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        client = Client(self.socket, timeout=5)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise Exited(f"enforcer exited {self.proc.returncode}:\n{self.log_tail()}")
            return self.socket.exists() and (bool(client.health().get("healthy")) or not healthy)

        try:
            wait_for(ready, timeout, "edge-enforcer", interval=0.05)
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None
        except BaseException:
            self.stop()
            raise
        self.ready_after = time.monotonic() - started

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc is None:
            return
        stop_pid(self.proc, timeout, sig)
        self.proc = None

    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def remove_firewall(self) -> None:
        """Unhook and delete this enforcer's iptables chains (they outlive the daemon)."""
        from enforcer.network.firewall import Firewall

        asyncio.run(Firewall(f"{self.host_id}:{self.state_dir}").remove())

    def unmount_secrets(self) -> None:
        subprocess.run(["umount", "-l", str(self.secrets_dir)], capture_output=True, check=False)

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def command(self, *args: str) -> list[str]:
        return [*enforcer_command(), "--config", str(self.config_path), *args]

    def cli(
        self, *args: str, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=timeout,
        )

    def apply(self, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        res = self.cli("apply", "-f", "-", input=yaml.safe_dump(doc))
        assert res.returncode == 0, res.stderr
        return res

    def _instances(self, check: bool) -> list[dict[str, Any]]:
        res = self.cli("ps", "-o", "json")
        if res.returncode != 0:
            assert not check, res.stderr
            return []
        data = json.loads(res.stdout)
        return list(data["instances"] if isinstance(data, dict) else data)

    def ps(self) -> dict[str, dict[str, Any]]:
        return {i["id"]: i for i in self._instances(check=True)}

    def app_names(self) -> list[str]:
        """The applications `ps` shows (none when the CLI cannot answer)."""
        return sorted({i["app"] for i in self._instances(check=False)})

    def wait_ps(
        self, predicate: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 30
    ) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        last: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            last = self.ps()
            if predicate(last):
                return last
            time.sleep(0.1)
        raise AssertionError(f"ps never satisfied the condition; last: {last}\n{self.log_tail()}")

    def wait_running(self, *ids: str, timeout: float = 30) -> dict[str, dict[str, Any]]:
        return self.wait_ps(
            lambda ps: all(ps.get(i, {}).get("state") == "running" for i in ids), timeout
        )
