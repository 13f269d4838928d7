"""Debian's `haproxy` in front of the suite's control processes: TCP mode, TLS passing through,
on a free loopback port; started as our child (``-db``: in the foreground) and stopped by pid.

The configuration is the shipped example (packaging/haproxy/edge-control.cfg) with the test's
addresses put in: what the test proves is what an operator installs.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

from tests.support.processes import (
    Exited,
    die_with_parent,
    free_port,
    installed,
    stop_pid,
    wait_for,
)

__all__ = ["HAProxy"]

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "haproxy" / "edge-control.cfg"


def configuration(port: int, backends: list[int], maxconn: int = 4000) -> str:
    """The example configuration, listening on 127.0.0.1:`port`, in front of `backends`."""
    text = EXAMPLE.read_text()
    text = re.sub(r"(?m)^\s*log .*\n", "", text)  # no syslog here
    text = re.sub(r"(?m)^(\s*)option tcplog\n", "", text)
    text = re.sub(r"maxconn \d+", f"maxconn {maxconn}", text)  # within our open-files limit
    text = text.replace("    bind :7443", f"    bind 127.0.0.1:{port}")
    text = re.sub(r"(?m)^\s*server control-.*\n", "", text)
    servers = "".join(f"    server control-{n} 127.0.0.1:{p}\n" for n, p in enumerate(backends))
    return text.rstrip("\n") + "\n" + servers


class HAProxy:
    def __init__(
        self, root: Path, backends: list[int], port: int | None = None, maxconn: int = 4000
    ) -> None:
        self.root = root
        self.maxconn = maxconn  # the fleet bench raises it (two files per connection)
        self.port = port or free_port()
        self.backends = backends
        self.config = root / "haproxy.cfg"
        self.log = root / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = installed("haproxy", "haproxy")
        self.config.write_text(configuration(self.port, self.backends, self.maxconn))
        check = subprocess.run(
            [binary, "-c", "-f", str(self.config)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refuses its configuration: {check.stderr}{check.stdout}")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-db", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        wait_for(self._ready, 20, f"haproxy on port {self.port}")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise Exited(f"haproxy exited: {self.log.read_text()}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, 10)
            self.proc = None
