"""The suite on two workers (pytest-xdist): `scripts/test.sh` runs
`pytest -n 2 -p tests.support.workers`.

A test file's tests stay together on one worker (its module fixtures are made once), and the
files that use one of the machine's fixed parts share a worker: the site tests' loopback
addresses 127.0.0.11-13, and the files that install the Debian packages or run the README's
quickstart (system paths, port 7443). Each worker has its own engine, registry and PostgreSQL
(the session fixtures). Those shared groups are the longest: they go first, so that neither
worker is left with one at the end.

A plugin of its own, not in conftest.py: a package build runs the unit tests with Debian's
pytest, which has no xdist and would refuse its hook.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest
from xdist.scheduler import LoadFileScheduling

SHARED_PARTS = {
    "site-addresses": (
        "test_etcd_gateway.py", "test_etcd_member.py", "test_log_relay_etcd.py",
        "test_site_failover.py", "test_site_join.py", "test_site_kv_etcd.py",
        "test_site_multihost.py", "test_site_network.py",
    ),
    "system": ("test_debian_package.py", "test_quickstart_stop.py"),
}  # fmt: skip
FIRST = tuple(SHARED_PARTS)


def group_of(nodeid: str) -> str:
    """The work unit of a test: its file's shared part, or its file."""
    module = nodeid.split("::", 1)[0]
    name = PurePosixPath(module).name
    return next((g for g, files in SHARED_PARTS.items() if name in files), module)


def _rank(item: pytest.Item) -> int:
    group = group_of(item.nodeid)
    return FIRST.index(group) if group in FIRST else len(FIRST)


def pytest_configure(config: pytest.Config) -> None:
    config.option.loadscopereorder = False  # the order below, not the most tests first


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: files keep their order within a rank


class ByFixedPart(LoadFileScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return group_of(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> ByFixedPart:
    return ByFixedPart(config, log)
