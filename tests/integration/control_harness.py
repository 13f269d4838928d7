"""Moved to tests.support.control (free_port to tests.support.processes); re-exported until the
imports are rewritten."""

from tests.support.control import (
    ControlProcess,
    Site,
    api_error,
    app_document,
    dumps,
    eventually,
    run,
)
from tests.support.processes import free_port

__all__ = [
    "ControlProcess", "Site", "api_error", "app_document", "dumps", "eventually", "free_port", "run",
]  # fmt: skip
