"""What CI provides: there a missing real part fails the run; elsewhere the test skips."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import NoReturn, Protocol, TypeVar

import pytest

from tests.support.processes import MissingPart

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> NoReturn:
    """A real part this test needs is not here: fail with CI=true, skip otherwise."""
    if IN_CI:
        pytest.fail(f"CI=true and a real part is missing: {reason}", pytrace=False)
    pytest.skip(reason)


class Part(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


P = TypeVar("P", bound=Part)


@contextlib.contextmanager
def running(part: P) -> Iterator[P]:
    """`part` started for a fixture (`missing` when it cannot start) and stopped afterwards."""
    try:
        part.start()
    except (MissingPart, TimeoutError) as exc:
        missing(str(exc))
    try:
        yield part
    finally:
        part.stop()
