"""The real parts the suite runs against: a private dockerd, a loopback registry, test images.

Each part is started by the suite, on its own socket/port and directories, and stopped by the
pid we started — never by name. `python -m tests.realparts` starts them by hand for debugging.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker

BUSYBOX = Path("/bin/busybox")
APPLETS = [
    "sh",
    "ash",
    "cat",
    "echo",
    "ls",
    "ps",
    "kill",
    "sleep",
    "true",
    "false",
    "nc",
    "httpd",
    "wget",
    "env",
    "id",
    "mkdir",
    "rm",
    "touch",
    "stat",
    "grep",
    "head",
    "tail",
    "test",
    "printf",
    "date",
    "hostname",
    "ip",
    "ifconfig",
    "netstat",
    "seq",
    "sed",
    "awk",
    "tr",
    "wc",
    "mount",
    "top",
    "dd",
    "sync",
]


class MissingPart(RuntimeError):
    """A real part (dockerd, docker-registry, busybox-static) is not installed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            if first != "default":
                nets.append(ipaddress.ip_network(first, strict=False))
    return nets


def pick_address_pool() -> str:
    """A /16 under 10.0.0.0/8 that no route on this machine overlaps, random per engine."""
    used = _used_networks()
    start = (os.getpid() * 7) % 200
    for i in range(200):
        net = ipaddress.ip_network(f"10.{40 + (start + i) % 200}.0.0/16")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise RuntimeError("no free 10.x.0.0/16 address pool for a test Docker engine")


def wait_for(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last})")


def stop_pid(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@dataclass
class DockerEngine:
    """A private dockerd: own socket, data root, exec root, pid file and address pool."""

    root: Path
    proc: subprocess.Popen[bytes] | None = None
    pool: str = ""

    @property
    def socket_path(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    def start(self, timeout: float = 60) -> None:
        exe = shutil.which("dockerd")
        if exe is None:
            raise MissingPart("dockerd is not installed (apt-get install docker.io)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.pool = self.pool or pick_address_pool()
        cmd = [
            exe,
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "dockerd.pid"),
            "--host", self.url,
            "--bridge=none",
            "--default-address-pool", f"base={self.pool},size=24",
            "--log-level", "warn",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise MissingPart(f"dockerd exited ({self.proc.returncode}): {tail}")
            if not self.socket_path.exists():
                return False
            client = docker.DockerClient(base_url=self.url, timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()

        try:
            wait_for(ready, timeout, f"dockerd on {self.socket_path}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            client = docker.DockerClient(base_url=self.url, timeout=30)
            for c in client.containers.list(all=True):
                with contextlib.suppress(Exception):
                    c.remove(force=True)
            client.close()
        stop_pid(self.proc, timeout=30)
        self.proc = None
        self._unmount_data_root()

    def _unmount_data_root(self) -> None:
        """dockerd bind-mounts its data root onto itself; a killed one leaves that behind."""
        data = str(self.root / "data")
        with open("/proc/mounts") as f:
            mounted = any(line.split()[1] == data for line in f)
        if mounted:
            subprocess.run(["umount", "-l", data], check=False)

    def restart(self) -> None:
        """Stop and start the same engine (same data root): containers survive as exited."""
        if self.proc is not None:
            stop_pid(self.proc, timeout=30)
            self.proc = None
        self.start()


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
        exe = shutil.which("docker-registry")
        if exe is None:
            raise MissingPart("docker-registry is not installed (apt-get install docker-registry)")
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


def busybox_rootfs_tar(extra_files: dict[str, bytes] | None = None) -> bytes:
    """A root filesystem with busybox-static and its applets as symlinks, as a tar archive."""
    if not BUSYBOX.exists():
        raise MissingPart("busybox-static is not installed (apt-get install busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "tmp", "www", "proc", "sys", "dev", "run"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        files = {
            "etc/passwd": b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
            "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
            "www/index.html": b"edgeward test image\n",
            **(extra_files or {}),
        }
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def import_image(
    client: docker.DockerClient, repository: str, tag: str, extra: dict[str, bytes] | None = None
) -> str:
    """`docker import` of the busybox root filesystem; returns `repository:tag`."""
    client.api.import_image_from_data(
        busybox_rootfs_tar(extra),
        repository=repository,
        tag=tag,
        changes=['CMD ["/bin/sh"]', "ENV PATH=/bin"],
    )
    return f"{repository}:{tag}"


def push(client: docker.DockerClient, ref: str) -> None:
    repository, tag = ref.rsplit(":", 1)
    for line in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(f"push {ref}: {line['error']}")


@contextlib.contextmanager
def real_parts(root: Path | None = None) -> Iterator[tuple[DockerEngine, Registry]]:
    base = root or Path(tempfile.mkdtemp(prefix="ew-", dir="/tmp"))
    engine = DockerEngine(base / "d")
    registry = Registry(base / "r")
    try:
        registry.start()
        engine.start()
        yield engine, registry
    finally:
        engine.stop()
        registry.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    with real_parts() as (eng, reg):
        print(f"DOCKER_HOST={eng.url}  registry={reg.address}  (Ctrl-C stops both)")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
