"""The suite's test images: busybox-static and its applets as a root filesystem, imported and
pushed to the suite's registry."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import docker

from tests.support.processes import MissingPart

__all__ = ["APPLETS", "BUSYBOX", "busybox_rootfs_tar", "import_image", "push"]

BUSYBOX = Path("/bin/busybox")
APPLETS = [
    "sh", "ash", "cat", "echo", "ls", "ps", "kill", "sleep", "true", "false", "nc", "httpd",
    "wget", "env", "id", "mkdir", "rm", "touch", "stat", "grep", "head", "tail", "test",
    "printf", "date", "hostname", "ip", "ifconfig", "netstat", "seq", "sed", "awk", "tr", "wc",
    "mount", "top", "dd", "sync"
]  # fmt: skip


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
