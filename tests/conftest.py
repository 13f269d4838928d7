"""Suite-wide fixtures: the real Docker engine, registry and test images.

Tests that need Docker take the `docker_client` (or `engine`) fixture. Where no engine can be
started, those tests skip locally — but with CI=true a missing engine fails the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.realparts import DockerEngine, MissingPart, Registry, import_image, push

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and a real part is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def parts_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ew-", dir="/tmp"))  # short: unix socket paths
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def registry(parts_root: Path) -> Iterator[Registry]:
    reg = Registry(parts_root / "registry")
    try:
        reg.start()
    except MissingPart as exc:
        _missing(str(exc))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def engine(parts_root: Path) -> Iterator[DockerEngine]:
    eng = DockerEngine(parts_root / "docker")
    try:
        eng.start()
    except (MissingPart, TimeoutError) as exc:
        _missing(str(exc))
    yield eng
    eng.stop()


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
        _missing(str(exc))
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
def enforcer(engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real `edge-enforcer run` on the suite's engine, with a fresh state directory."""
    from tests.enforcerproc import EnforcerProc

    root = Path(tempfile.mkdtemp(prefix="enf-", dir="/tmp"))
    proc = EnforcerProc(root, engine.url)
    proc.start()
    yield proc
    if proc.proc is not None:
        for app in [a for a in _app_names(proc)]:
            proc.cli("rm", app, "--purge")
    proc.stop()
    proc.remove_firewall()
    proc.unmount_secrets()
    shutil.rmtree(root, ignore_errors=True)


def _app_names(proc: Any) -> list[str]:
    import json

    res = proc.cli("ps", "-o", "json")
    if res.returncode != 0:
        return []
    data = json.loads(res.stdout)
    items = data["instances"] if isinstance(data, dict) else data
    return sorted({i["app"] for i in items})
