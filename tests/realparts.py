"""Moved to tests.support (engines, registry, images, processes); re-exported until the imports
are rewritten. `python -m tests.support.engines` starts the parts by hand."""

from tests.support.engines import DockerEngine, pick_address_pool, real_parts
from tests.support.images import APPLETS, BUSYBOX, busybox_rootfs_tar, import_image, push
from tests.support.processes import MissingPart, free_port, stop_pid, wait_for
from tests.support.registry import Registry

__all__ = [
    "APPLETS", "BUSYBOX", "DockerEngine", "MissingPart", "Registry", "busybox_rootfs_tar",
    "free_port", "import_image", "pick_address_pool", "push", "real_parts", "stop_pid", "wait_for",
]  # fmt: skip
