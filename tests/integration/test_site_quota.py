"""The site holds a tenant to its quota even when control's deploy-time check is bypassed."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.support.apps import app, sleeper
from tests.support.control import ControlProcess
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine


def test_a_new_latest_version_beyond_the_quota_runs_only_what_fits(
    control: ControlProcess, engine: DockerEngine, test_image: str
) -> None:
    admin = control.client()
    made = control.cli("tenant", "create", "acme", "--parent", "system", "--quota", "cpus=1")
    assert made.returncode == 0, made.stderr
    bundle = control.bundle("store-q", {"customer": "acme"})
    admin.post("/v1/sites/store-q/assign", {"tenant": "acme"})
    acme = control.client(admin.post("/v1/tokens", {"tenant": "acme"})["token"])

    root = Path(tempfile.mkdtemp(prefix="quota-", dir="/tmp"))
    enf = EnforcerProc(root, engine.url, extra_config=f'[control]\nenrollment = "{bundle}"\n')
    enf.start()
    try:
        v1 = app("heavy", sleeper("s", test_image, resources={"cpus": 0.5}))
        acme.put("/v1/applications/heavy/versions/1", v1)
        acme.put(
            "/v1/deployments/heavy",
            {"name": "heavy", "application": "heavy", "version": "latest",
             "placement": {"all-sites": True}},
        )  # fmt: skip
        enf.wait_running("heavy.s.0", timeout=60)

        # v2 asks for 3 x 0.5 cpus under `latest`: control does not re-check, the site does
        v2 = app(
            "heavy", sleeper("s", test_image, resources={"cpus": 0.5}, replicas=3), version="2"
        )
        acme.put("/v1/applications/heavy/versions/2", v2)
        ps = enf.wait_ps(lambda p: "heavy.s.2" in p and p["heavy.s.1"]["state"] == "running", 60)
        assert ps["heavy.s.0"]["state"] == "running"
        assert ps["heavy.s.2"]["state"] == "pending"
        assert ps["heavy.s.2"]["reason"] == "tenant acme quota: cpus would be 1.5, over 1"

        # an offline restart keeps holding the site to the quota
        control.stop()
        enf.stop()
        enf.start()
        ps = enf.wait_ps(lambda p: p.get("heavy.s.1", {}).get("state") == "running", 30)
        assert ps["heavy.s.2"]["state"] == "pending"
    finally:
        enf.cli("rm", "heavy")
        enf.stop()
        enf.remove_firewall()
        shutil.rmtree(root, ignore_errors=True)
