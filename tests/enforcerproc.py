"""A real `edge-enforcer run` process for tests, and its CLI."""

from __future__ import annotations

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

import yaml

from tests.realparts import wait_for


@dataclass
class EnforcerProc:
    root: Path
    docker_url: str
    extra_config: str = ""
    host_labels: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.root / "enforcer.toml"

    @property
    def socket(self) -> Path:
        return self.root / "api.sock"

    @property
    def log_path(self) -> Path:
        return self.root / "enforcer.log"

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        labels = ", ".join(f'"{k}" = "{v}"' for k, v in self.host_labels.items())
        self.config_path.write_text(
            f'state-dir = "{self.root / "state"}"\n'
            f'[docker]\nhost = "{self.docker_url}"\n'
            f'[api]\nsocket = "{self.socket}"\n'
            f'[host]\nid = "host-{self.root.name}"\nlabels = {{ {labels} }}\n'
            '[site]\nname = "test-site"\n'
            '[restart]\ninitial-delay = "200ms"\nmax-delay = "3s"\nreset-after = "5s"\n'
            '[reconcile]\nresync-interval = "30s"\n'
            f'[secrets]\ndir = "{self.secrets_dir}"\n' + self.extra_config
        )

    @property
    def secrets_dir(self) -> Path:
        """Its own directory for secret volumes (a tmpfs it mounts when it first needs one)."""
        return self.root / "secrets"

    def unmount_secrets(self) -> None:
        subprocess.run(["umount", "-l", str(self.secrets_dir)], capture_output=True, check=False)

    def start(self, timeout: float = 30) -> None:
        if not self.config_path.exists():
            self.write_config()
        env = dict(os.environ, EDGEWARD_LOG_LEVEL="DEBUG", PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "enforcer", "--config", str(self.config_path), "run"],
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"enforcer exited {self.proc.returncode}:\n{self.log_tail()}")
            return self.cli("status").returncode == 0

        wait_for(ready, timeout, "edge-enforcer", interval=0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def remove_firewall(self) -> None:
        """Unhook and delete this enforcer's iptables chains (they outlive the daemon)."""
        import asyncio

        from enforcer.network.firewall import Firewall

        owner = f"host-{self.root.name}:{self.root / 'state'}"
        asyncio.run(Firewall(owner).remove())

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "enforcer", "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
        )

    def apply(self, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        res = self.cli("apply", "-f", "-", input=yaml.safe_dump(doc))
        assert res.returncode == 0, res.stderr
        return res

    def ps(self) -> dict[str, dict[str, Any]]:
        res = self.cli("ps", "-o", "json")
        assert res.returncode == 0, res.stderr
        data = json.loads(res.stdout)
        items = data["instances"] if isinstance(data, dict) else data
        return {i["id"]: i for i in items}

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
