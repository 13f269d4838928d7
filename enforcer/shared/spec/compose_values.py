"""What the Compose conversion shares: the problems found so far, the file's top-level
definitions, and Compose's ways of writing durations, sizes and commands."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from enforcer.shared.spec.fields import describe

__all__ = [
    "Context",
    "compose_duration",
    "compose_size",
    "literal",
    "whole",
    "words",
]

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass
class Context:
    """One conversion: its problems (``path: message``) and the file's top-level sections."""

    volumes: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict)
    networks: Mapping[str, Any] = field(default_factory=dict)
    devices: Mapping[str, str] = field(default_factory=dict)  # host path glob -> device label
    environ: Mapping[str, str] = field(default_factory=dict)  # for "NAME" alone in environment
    service_names: frozenset[str] = frozenset()
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}")

    def ignored(self, path: str, why: str = "not supported") -> None:
        self.warn(path, f"{why}, ignored")

    def mapping(self, path: str, value: object) -> dict[str, Any] | None:
        """`value` when it is a mapping with string keys; else an error and None."""
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return value
        self.error(path, f"expected a mapping, got {describe(value)}")
        return None

    def text(self, path: str, value: object) -> str | None:
        """A scalar as Compose reads it (numbers and booleans as their text); else an error."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        self.error(path, f"expected a string, got {describe(value)}")
        return None

    def duration(self, path: str, value: object) -> float | None:
        try:
            return compose_duration(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return None


def compose_duration(value: object) -> float:
    """Seconds in a Compose duration (Go's form: ``1m30s``, ``500ms``, ``2h``; a bare number is
    seconds). Raises ValueError."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{describe(value)} is not a duration (write 10s, 1m30s or 500ms)")
    total, at = Decimal(0), 0
    while at < len(value):
        match = _GO_DURATION.match(value, at)
        if match is None:
            raise ValueError(f'"{value}" is not a duration (write 10s, 1m30s or 500ms)')
        total += Decimal(match.group(1)) * _GO_UNITS[match.group(2)]
        at = match.end()
    return float(total)


def compose_size(value: object) -> int:
    """Bytes in a Compose size: an integer, or a number with ``b``, ``k``, ``m``, ``g`` (binary
    multiples, as Docker reads them; ``512m``, ``1gb``, ``1.5G``). Raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{describe(value)} is not a size (write 512m, 1g or a number of bytes)")
    try:
        amount = Decimal(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    except InvalidOperation:
        raise ValueError(f"{describe(value)} is not a size") from None
    return int(amount)


def whole(value: object) -> object:
    """`value`, with a whole number written as a string ("3", as interpolation leaves it) as
    the number (as Compose reads it)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def literal(text: str) -> str:
    """`text` written so that the spec's own ``${NAME}`` expansion gives `text` back: a ``$``
    before ``$`` or ``{`` is doubled (Compose has expanded its variables already)."""
    return re.sub(r"\$(?=[${])", "$$", text)


def words(ctx: Context, path: str, value: object) -> list[str] | None:
    """A command: a list of strings, or one string split as a shell would (as Compose does)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            ctx.error(path, f"cannot split the command into words: {exc}")
            return None
    if isinstance(value, list):
        out: list[str] = []
        for i, word in enumerate(value):
            text = ctx.text(f"{path}[{i}]", word)
            if text is not None:
                out.append(text)
        return out
    ctx.error(path, f"expected a string or a list of strings, got {describe(value)}")
    return None
