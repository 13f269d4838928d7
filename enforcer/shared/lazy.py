"""Modules imported on their first use, not when the importing module loads.

`cryptography` costs a process about 8 MB the moment any part of it is imported; a worker
host that never signs, seals nor opens anything should not pay for it. Write, in place of the
import (mypy still sees the real one)::

    if TYPE_CHECKING:
        from cryptography import x509
    else:
        x509 = lazy("cryptography.x509")

Attribute access (`x509.Certificate`, `isinstance(k, ec.EllipticCurvePrivateKey)`) imports the
module then. Not for names an `except` clause catches: those need the real class.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["lazy"]


class _Lazy:
    __slots__ = ("_module", "_name")

    def __init__(self, module: str, name: str) -> None:
        self._module = module
        self._name = name

    def _target(self) -> Any:
        found = importlib.import_module(self._module)
        return getattr(found, self._name) if self._name else found

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._target(), attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<lazy {self._module}{'.' + self._name if self._name else ''}>"


def lazy(module: str, name: str = "") -> Any:
    """`module` (or its attribute `name`), imported when first used."""
    return _Lazy(module, name)
