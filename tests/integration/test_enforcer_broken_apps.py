"""No application can take a site down: an application stored by an older version that no
longer validates is failed with the reason, and the enforcer and the others run as usual."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from enforcer.facade import AppRecord, AppSource
from enforcer.site.store import Store
from tests.support.apps import app, sleeper
from tests.support.enforcer import EnforcerProc


async def store_as_an_older_version_did(db: Path, document: dict[str, Any]) -> None:
    store = Store(db)
    await store.open()
    rec = AppRecord(document["name"], "1", "system", AppSource.LOCAL, document, time.time())
    await store.put_application(rec)
    await store.close()


def test_a_stored_application_that_no_longer_validates_fails_alone_and_can_be_removed(
    enforcer: EnforcerProc, test_image: str
) -> None:
    enforcer.apply(app("good", sleeper("worker", test_image)))
    enforcer.wait_running("good.worker.0")
    enforcer.stop()
    # what an older validator let through: a value that refers to an undefined ${NOPE}
    old = app(
        "old",
        sleeper("worker", test_image, variables=[{"name": "URL", "value": "http://${NOPE}/"}]),
    )
    asyncio.run(store_as_an_older_version_did(enforcer.state_dir / "enforcer.db", old))

    enforcer.start()  # starts, with the good application running on
    ps = enforcer.wait_running("good.worker.0")
    assert ps["old.worker.0"]["state"] == "failed"
    assert "undefined variable ${NOPE}" in ps["old.worker.0"]["reason"]
    assert "variables[0].value" in ps["old.worker.0"]["reason"]  # with its path

    removed = enforcer.cli("rm", "old")
    assert removed.returncode == 0, removed.stderr
    assert "old.worker.0" not in enforcer.ps()
    assert enforcer.app_names() == ["good"]
