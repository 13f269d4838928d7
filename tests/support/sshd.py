"""A private OpenSSH server (Debian's `openssh-server`) for Git over SSH: never the machine's
sshd, but `/usr/sbin/sshd -D -e -f CONFIG` with a host key, an authorized-keys file and a pid file
of its own in a temporary directory, on 127.0.0.1 and a free port; started as our child and
stopped by its pid. It lets the user running the tests in with the deploy keys it is given
(public key only: no password, no keyboard-interactive, no forwarding, no terminal).

`deploy_key` makes an Ed25519 key pair with `ssh-keygen`, as an operator makes a deploy key.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import (
    Exited,
    MissingPart,
    die_with_parent,
    free_port,
    stop_pid,
    wait_for,
)

__all__ = ["DeployKey", "Sshd", "deploy_key"]

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd; its init script makes it


@dataclass(frozen=True)
class DeployKey:
    private_file: Path  # OpenSSH private key, no passphrase, 0600
    public: str  # the authorized_keys line ("ssh-ed25519 AAAA... comment")

    @property
    def private(self) -> str:
        return self.private_file.read_text()


def _keygen() -> str:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise MissingPart("ssh-keygen is not installed (apt-get install openssh-client)")
    return keygen


def deploy_key(directory: Path, name: str = "deploy") -> DeployKey:
    """A new Ed25519 key pair in `directory` (`name` and `name.pub`)."""
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / name
    subprocess.run(
        [
            _keygen(),
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            f"{name}@edgeward-tests",
            "-f",
            str(private),
        ],
        check=True,
        capture_output=True,
    )
    return DeployKey(private, (directory / f"{name}.pub").read_text().strip())


class Sshd:
    """sshd on 127.0.0.1:`port` letting `user` (default: who runs the tests) in with `keys`."""

    def __init__(
        self, root: Path, keys: list[DeployKey], user: str | None = None, port: int | None = None
    ) -> None:
        self.root = root
        self.keys = keys
        self.user = user or getpass.getuser()
        self.port = port or free_port()
        self.config = root / "sshd_config"
        self.host_key = root / "host_ed25519_key"
        self.authorized_keys = root / "authorized_keys"
        self.pid_file = root / "sshd.pid"
        self.log = root / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, path: Path) -> str:
        """An ssh:// URL of a repository at `path` on this server."""
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        if not os.access(SSHD, os.X_OK):
            raise MissingPart(f"{SSHD} is not installed (apt-get install openssh-server)")
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            subprocess.run(
                [_keygen(), "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)],
                check=True,
                capture_output=True,
            )
        # `restrict`: no forwarding, no terminal, no ~/.ssh/rc, as a deploy key should be
        self.authorized_keys.write_text("".join(f"restrict {k.public}\n" for k in self.keys))
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.pid_file}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            f"AllowUsers {self.user}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "DisableForwarding yes\n"
            "PermitTTY no\n"
            "PrintMotd no\n"
            "LogLevel VERBOSE\n"
        )
        if os.geteuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        check = subprocess.run(
            [SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"sshd refuses its configuration: {check.stderr}{check.stdout}")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        wait_for(self._ready, 10, f"sshd on port {self.port}")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise Exited(f"sshd exited: {self.log.read_text()}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            return s.recv(64).startswith(b"SSH-2.0-")

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, 10)
            self.proc = None
