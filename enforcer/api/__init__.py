"""The enforcer's local HTTP API: `make_app`, `serve` (see `enforcer.api.server`).

The names are imported on first use, so that the CLI, which only needs
`enforcer.api.documents`, does not pay for importing aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enforcer.api.server import ApiError, ApiServer, make_app, serve

__all__ = ["ApiError", "ApiServer", "make_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("enforcer.api.server"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
