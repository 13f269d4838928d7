"""Control's Prometheus metrics: the exposition format promtool accepts, behind a token unless
``metrics-public = true`` (a real `edge-control serve`)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

import aiohttp

from tests.support.control import ControlProcess, run

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def get_metrics(control: ControlProcess, token: str | None) -> tuple[int, str, str]:
    context = ssl.create_default_context(cafile=str(control.state_dir / "ca.pem"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(control.url + "/v1/metrics", headers=headers, ssl=context) as r,
    ):
        return r.status, r.headers.get("Content-Type", ""), await r.text()


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (apt-get install prometheus)"
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


def test_metrics_need_a_token_and_pass_promtool_with_help_and_type_for_every_family(
    control: ControlProcess,
) -> None:
    control.bundle("store-1")  # some traffic, so that counters move

    status, _, text = run(get_metrics(control, None))
    assert status == 401 and "token" in text
    status, content_type, text = run(get_metrics(control, control.admin_token))
    assert status == 200 and content_type == CONTENT_TYPE
    checked = promtool_check(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    families = {line.split()[0].split("{")[0]  # a sample's family, without its labels
                for line in text.splitlines() if not line.startswith("#")}  # fmt: skip
    for family in families:
        assert f"# HELP {family} " in text and f"# TYPE {family} " in text, family
    assert "edgeward_control_sites 1" in text
    assert "edgeward_control_http_responses_4xx_total 1" in text


def test_metrics_public_serves_metrics_without_a_token() -> None:
    root = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))
    control = ControlProcess(root)
    with control.config.open("a") as config:
        config.write("metrics-public = true\n")
    control.start()
    try:
        status, content_type, text = run(get_metrics(control, None))
        assert (status, content_type) == (200, CONTENT_TYPE)
        assert promtool_check(text).returncode == 0
        status, _, _ = run(get_metrics(control, "ewt_wrong"))
        assert status == 200  # a token is not looked at
    finally:
        control.stop()
        shutil.rmtree(root, ignore_errors=True)
