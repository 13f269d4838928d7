"""Three control processes on one PostgreSQL database behind Debian's HAProxy (the shipped
example configuration: TCP mode, TLS passing through): sites keep one control URL, and when
the process holding a site's long-poll dies the site reconnects through HAProxy, misses no
change and enrolls nothing again."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.cli.client import Connection, ControlClient
from enforcer.link.enrollment import enroll
from tests.support.ci import running
from tests.support.control import ControlProcess, Site, eventually, run
from tests.support.haproxy import HAProxy
from tests.support.postgres import PostgresCluster, control_processes, stop_all
from tests.support.processes import free_port


@pytest.fixture()
def balanced(
    postgres_cluster: PostgresCluster,
) -> Iterator[tuple[HAProxy, list[ControlProcess]]]:
    root = Path(tempfile.mkdtemp(prefix="ctl-ha-", dir="/tmp"))
    port = free_port()
    processes = control_processes(postgres_cluster, root, 3, f"https://127.0.0.1:{port}")
    try:
        with running(HAProxy(root, [p.port for p in processes], port)) as haproxy:
            yield haproxy, processes
    finally:
        stop_all(processes)
        shutil.rmtree(root, ignore_errors=True)


def holding(processes: list[ControlProcess], site: str) -> list[ControlProcess]:
    """The processes where `site` holds a long-poll now."""
    return [
        p
        for p in processes
        if p.proc is not None and p.client().get(f"/v1/sites/{site}")["connected"]
    ]


def test_killing_the_process_that_holds_a_sites_long_poll_loses_the_site_nothing(
    balanced: tuple[HAProxy, list[ControlProcess]], tmp_path: Path
) -> None:
    haproxy, processes = balanced
    first = processes[0]
    # operators, too, use the one URL
    operator = ControlClient(Connection(haproxy.url, first.admin_token, first.state_dir / "ca.pem"))

    async def scenario() -> None:
        answer = operator.post(
            "/v1/enrollment/tokens", {"site": "store-1", "labels": {"customer": "acme"}}
        )
        identity = await enroll(answer["bundle"], tmp_path / "site")
        assert identity.url == haproxy.url
        site = Site(identity, tmp_path / "site")
        client = site.start()
        operator.put("/v1/applications/vision/versions/1.0", app("vision", "1.0"))
        operator.put(
            "/v1/deployments/v",
            {"name": "v", "application": "vision", "placement": {"match-site-labels": "customer"}},
        )
        await site.wait_for(lambda: site.app_names == ["vision@1.0"])
        await eventually(lambda: len(holding(processes, "store-1")) == 1)
        [victim] = holding(processes, "store-1")
        survivor = next(p for p in processes if p is not victim)
        for n in range(3):
            client.push_event({"type": "tick", "n": n})
        await asyncio.to_thread(victim.stop, True)  # SIGKILL
        killed = time.monotonic()
        survivor.push_app("vision", "2.0")  # a change while the site has no long-poll
        for n in range(3, 6):
            client.push_event({"type": "tick", "n": n})
        await site.wait_for(lambda: site.app_names == ["vision@2.0"], timeout=15)
        took = time.monotonic() - killed
        await eventually(lambda: len(holding(processes, "store-1")) == 1, timeout=15)

        def ticks() -> list[int]:
            events = operator.get("/v1/sites/store-1/events", limit="100")["events"]
            return [e["event"]["n"] for e in events if e["event"].get("type") == "tick"]

        await eventually(lambda: ticks() == list(range(6)), timeout=15)
        record = operator.get("/v1/sites/store-1")
        assert record["state"] == "enrolled" and record["revision"] == site.revision
        assert identity.cert_path.exists() and client.link["state"] == "connected"
        print(f"the site had the change {took:.1f} s after its control process was killed")
        await site.stop()

    run(scenario(), timeout=120)


def app(name: str, version: str) -> dict[str, object]:
    return {
        "name": name,
        "version": version,
        "services": [{"name": "main", "containers": [{"name": "main", "image": "busybox"}]}],
    }
