"""`scripts/quickstart.sh stop` leaves nothing behind on the machine."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from types import ModuleType

import docker
import pytest

from tests.support.engines import DockerEngine

ROOT = Path(__file__).resolve().parents[2]


def _quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "scripts" / "quickstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_stop_leaves_no_bridge_and_no_iptables_rule_behind(
    monkeypatch: pytest.MonkeyPatch, test_image: str
) -> None:
    root = Path(tempfile.mkdtemp(prefix="qs-", dir="/tmp"))
    engine = DockerEngine(root / "d")
    engine.start()
    bridge = "ew-qs-test"
    try:
        client = docker.DockerClient(base_url=engine.url)
        # what the example application leaves on the quickstart's engine: a network of the
        # enforcer's (its own bridge, ports published through iptables) and a container on it
        client.networks.create(
            "ew.system.hello",
            driver="bridge",
            options={"com.docker.network.bridge.name": bridge},
            labels={"edgeward.managed": "true"},
        )
        client.images.pull(test_image)
        client.containers.run(
            test_image, ["sleep", "100000"], network="ew.system.hello", detach=True,
            ports={"8080/tcp": ("127.0.0.1", 0)},
        )  # fmt: skip
        client.close()
        assert bridge in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout

        qs = _quickstart()
        state = root / "state"
        state.mkdir()
        assert engine.proc is not None
        (state / "pids.json").write_text(json.dumps({"dockerd": engine.proc.pid}))
        monkeypatch.setattr(qs, "STATE", state)
        monkeypatch.setattr(qs, "PIDS", state / "pids.json")
        monkeypatch.setattr(qs, "ENGINE_ROOT", root / "d")
        # the engine is this process's child: reap it the moment it exits, as init reaps the
        # quickstart's own engine (a zombie would look alive to `stop` for its whole wait)
        reaper = threading.Thread(target=engine.proc.wait, daemon=True)
        reaper.start()
        qs.stop()
        reaper.join(30)
        engine.proc.wait(30)
        engine.proc = None

        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert bridge not in links
        saved = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        assert [line for line in saved.splitlines() if bridge in line] == []
        with open("/proc/mounts") as f:
            assert str(root / "d" / "data") not in f.read()
    finally:
        engine.stop()
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
