"""The enforcer's /v1/metrics, scraped from a real enforcer process driving a real dockerd, is
valid Prometheus exposition (checked by `promtool`) with reconcile durations and restarts."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess

import aiohttp
import pytest

from tests.support.apps import app, container, service
from tests.support.enforcer import EnforcerProc


def scrape(enforcer: EnforcerProc) -> tuple[str, str]:
    async def get() -> tuple[str, str]:
        connector = aiohttp.UnixConnector(path=str(enforcer.socket))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get("http://localhost/v1/metrics") as response,
        ):
            assert response.status == 200
            return response.headers["Content-Type"], await response.text()

    return asyncio.run(get())


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert match is not None, f"no sample {sample} in:\n{text}"
    return float(match.group(1))


def test_metrics_pass_promtool_with_reconcile_durations_and_restarts_per_instance(
    enforcer: EnforcerProc, test_image: str
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (scripts/setup.sh)")
    crasher = service("loop", container("main", test_image, "sh", "-c", "sleep 0.3; exit 3"))
    enforcer.apply(app("crashy", crasher))
    enforcer.wait_ps(lambda ps: ps.get("crashy.loop.0", {}).get("restarts", 0) >= 2, timeout=30)

    content_type, text = scrape(enforcer)
    assert content_type.startswith("text/plain; version=0.0.4")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == check.stderr.strip() == ""  # no lint complaints either

    families = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    helped = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    assert {name for name, _ in families} == helped
    assert ("edgeward_reconcile_duration_seconds", "histogram") in families
    assert value(text, "edgeward_reconcile_duration_seconds_count") > 0
    assert value(text, 'edgeward_reconcile_duration_seconds_bucket{le="+Inf"}') == value(
        text, "edgeward_reconcile_duration_seconds_count"
    )
    restarts = value(
        text,
        'edgeward_instance_restarts_total{tenant="system",app="crashy",service="loop",'
        'instance="crashy.loop.0"}',
    )
    assert restarts >= 2
    assert enforcer.cli("rm", "crashy").returncode == 0
