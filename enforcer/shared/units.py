"""Durations and sizes as written in specs and configuration (DESIGN.md).

Durations carry a unit: ``500ms``, ``10s``, ``5m``, ``1h``, or a combination in decreasing
order such as ``1m30s`` or ``1h30m``; a number may have a fraction (``1.5s``). Sizes are plain
bytes (``1048576``) or a number with a binary unit ``Ki``, ``Mi`` or ``Gi``.

`format_duration` and `format_size` give text that parses back to exactly the same value.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

_DURATION_UNITS: dict[str, Decimal] = {
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
}
_UNIT_ORDER = ("h", "m", "s", "ms")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")
_PLAIN_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")

_SIZE_UNITS: dict[str, int] = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi)?")
_SIZE_HINT = 'use plain bytes or a number with Ki, Mi or Gi, e.g. "256Mi"'


def parse_duration(text: str) -> float:
    """Seconds in `text`, e.g. ``"500ms"`` -> 0.5, ``"1m30s"`` -> 90.0.

    Raises ValueError naming the text when it is not a duration; a plain number is refused
    because its unit would be a guess.
    """
    if not isinstance(text, str):
        raise ValueError(f'{text!r} is not a duration: write it as text with a unit, e.g. "10s"')
    body = text.strip()
    if _PLAIN_NUMBER.fullmatch(body):
        raise ValueError(f'"{text}" is not a duration: add a unit, e.g. "{body}s"')
    total = Decimal(0)
    position = 0
    last_unit = -1
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            raise ValueError(f'"{text}" is not a duration (use a unit: 500ms, 10s, 5m, 1h)')
        number, unit = match.groups()
        rank = _UNIT_ORDER.index(unit)
        if rank <= last_unit:
            raise ValueError(
                f'"{text}" is not a duration: give each unit once, largest first, e.g. "1m30s"'
            )
        last_unit = rank
        total += Decimal(number) * _DURATION_UNITS[unit]
        position = match.end()
    if last_unit < 0:
        raise ValueError(f'"{text}" is not a duration (use a unit: 500ms, 10s, 5m, 1h)')
    seconds = float(total)
    if not math.isfinite(seconds):
        raise ValueError(f'"{text}" is not a duration: it is too long')
    return seconds


def format_duration(seconds: float) -> str:
    """Short text for `seconds` that `parse_duration` reads back to the same float.

    ``0.5`` -> ``"500ms"``, ``90`` -> ``"1m30s"``, ``3600`` -> ``"1h"``, ``10.25`` ->
    ``"10.25s"``; values that are not whole milliseconds are written in seconds.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{seconds!r} is not a duration: it must be finite and not negative")
    if seconds == 0:
        return "0s"
    pretty = _pretty_duration(seconds)
    if pretty is not None and parse_duration(pretty) == seconds:
        return pretty
    return _plain_decimal(seconds) + "s"


def _pretty_duration(seconds: float) -> str | None:
    millis = round(seconds * 1000)
    if millis <= 0:
        return None
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    parts: list[str] = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if rest:
        if not parts and rest < 1000:
            parts.append(f"{rest}ms")
        elif rest % 1000 == 0:
            parts.append(f"{rest // 1000}s")
        else:
            parts.append(_plain_decimal(float(Decimal(rest) / 1000)) + "s")
    return "".join(parts)


def _plain_decimal(value: float) -> str:
    """The shortest decimal that reads back as `value`, without an exponent."""
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def parse_size(value: str | int) -> int:
    """Bytes in `value`: an integer, ``"1048576"``, ``"512Ki"``, ``"256Mi"``, ``"1.5Gi"``.

    Raises ValueError naming the value when it is not a size (negative, a decimal unit such
    as ``M``, a fraction of a byte).
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not a size: {_SIZE_HINT}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is not a size: it is negative")
        return value
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f'"{value}" is not a size: {_SIZE_HINT}')
    number, unit = match.groups()
    amount = Decimal(number) * _SIZE_UNITS[unit or ""]
    if amount != amount.to_integral_value():
        raise ValueError(f'"{value}" is not a size: it is not a whole number of bytes')
    return int(amount)


def format_size(size: int) -> str:
    """``268435456`` -> ``"256Mi"``; sizes that are not whole KiB stay plain bytes."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"{size!r} is not a size")
    for unit in ("Gi", "Mi", "Ki"):
        factor = _SIZE_UNITS[unit]
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
