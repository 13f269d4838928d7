"""Debian's docker-registry on a loopback port, its storage in a directory of the suite."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import MissingPart, free_port, installed, stop_pid, wait_for

__all__ = ["Registry"]


@dataclass
class Registry:
    """Debian's docker-registry on a loopback port, storage in a temp dir."""

    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        exe = installed("docker-registry", "docker-registry")
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}}}\n"
            f"http: {{addr: '{self.address}'}}\n"
        )
        with (self.root / "registry.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [exe, "serve", str(config)], stdout=log, stderr=log, start_new_session=True
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise MissingPart(f"docker-registry exited ({self.proc.returncode})")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_for(ready, timeout, f"docker-registry on {self.address}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)
            self.proc = None
