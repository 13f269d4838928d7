"""On a multi-host site a host computes only the instances the leader assigned to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from enforcer.reconcile.instances import Context
from enforcer.secrets.files import SecretFiles
from enforcer.secrets.vaults import SiteVaults
from enforcer.site.desired import desired_state
from enforcer.site.store import Store
from tests.unit.test_desired_state import HOST, app


def test_only_the_instances_assigned_to_this_host_are_desired_or_reported(
    tmp_path: Path,
) -> None:
    async def noop(*args: Any, **kwargs: Any) -> None:
        return None

    apps = {"web": app("web", replicas=3), "big": app("big", resources={"memory": "64Gi"})}

    def compute(only: frozenset[str] | None) -> tuple[list[str], list[str]]:
        state = desired_state(
            HOST,
            apps,
            (),
            (),
            SiteVaults(Store(tmp_path / "enforcer.db"), tmp_path, emit=noop),
            SecretFiles(tmp_path / "secrets"),
            Context(site="s", host=HOST.id),
            tmp_path / "instances",
            only=only,
        )
        return sorted(state.desired), sorted(state.pending)

    # one host on its own: every replica here, and what does not fit is pending here
    assert compute(None) == (["web.worker.0", "web.worker.1", "web.worker.2"], ["big.worker.0"])
    # one host of a site: what the leader gave it, nothing of the others' instances
    assert compute(frozenset({"web.worker.1"})) == (["web.worker.1"], [])
    assert compute(frozenset()) == ([], [])
    # assigned but it does not fit here (the leader's view was older): pending, with a reason
    assert compute(frozenset({"big.worker.0"})) == ([], ["big.worker.0"])
