"""Suite-wide fixtures: the real Docker engine, registry and test images.

Tests that need Docker take the `docker_client` (or `engine`) fixture. Where no engine can be
started, those tests skip locally — but with CI=true a missing engine fails the run.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import pytest

from tests.support.ci import missing, running
from tests.support.engines import DockerEngine
from tests.support.images import import_image, push
from tests.support.processes import MissingPart
from tests.support.registry import Registry

if TYPE_CHECKING:  # the enforcer's modules load only for the tests that run one
    from tests.support.enforcer import EnforcerProc


@pytest.fixture(scope="session")
def parts_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ew-", dir="/tmp"))  # short: unix socket paths
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def registry(parts_root: Path) -> Iterator[Registry]:
    with running(Registry(parts_root / "registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def engine(parts_root: Path) -> Iterator[DockerEngine]:
    with running(DockerEngine(parts_root / "docker")) as eng:
        yield eng


@pytest.fixture(scope="session")
def docker_client(engine: DockerEngine) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=engine.url, timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="session")
def test_image(docker_client: docker.DockerClient, registry: Registry) -> str:
    """A busybox image in the suite's registry (pushed, then removed locally so runs pull it)."""
    try:
        ref = import_image(docker_client, f"{registry.address}/edgeward/busybox", "1")
    except MissingPart as exc:
        missing(str(exc))
    push(docker_client, ref)
    return ref


@pytest.fixture(scope="session")
def test_image_v2(docker_client: docker.DockerClient, registry: Registry) -> str:
    """A second, different image (for updates that change the image id)."""
    ref = import_image(
        docker_client,
        f"{registry.address}/edgeward/busybox",
        "2",
        extra={"etc/edgeward-version": b"2\n"},
    )
    push(docker_client, ref)
    return ref


@pytest.fixture()
def enforcer(engine: DockerEngine) -> Iterator[EnforcerProc]:
    """A real `edge-enforcer run` on the suite's engine, with a fresh state directory."""
    from tests.support.enforcer import EnforcerProc

    root = Path(tempfile.mkdtemp(prefix="enf-", dir="/tmp"))
    proc = EnforcerProc(root, engine.url)
    proc.start()
    yield proc
    apps = proc.app_names() if proc.proc is not None else []
    proc.stop()  # its containers run on without it...
    remove_applications(engine, apps)  # ...and go at once, never waiting out a stop timeout
    proc.remove_firewall()
    proc.unmount_secrets()
    shutil.rmtree(root, ignore_errors=True)


def remove_applications(engine: DockerEngine, apps: list[str]) -> None:
    """Everything of `apps` on `engine` (containers killed, networks, volumes): a test's
    leftovers, taken away without the enforcer (which `rm` tests prove elsewhere)."""
    if not apps:
        return
    client = docker.DockerClient(base_url=engine.url, timeout=60)
    try:
        for name in apps:
            selector = {"label": f"edgeward.app={name}"}
            for c in client.containers.list(all=True, filters=selector):
                c.remove(force=True, v=True)
            for n in client.networks.list(filters=selector):
                n.remove()
            for v in client.volumes.list(filters=selector):
                v.remove(force=True)
    finally:
        client.close()
