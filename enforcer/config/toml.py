"""Where each key of a TOML document is written: tomllib gives line numbers for syntax errors
only, so errors found after parsing (unknown keys, wrong types) look their line up here.

`key_lines` scans the text: table headers, array-of-tables headers (with the index of each
element), dotted keys, keys of single-line inline tables, and skips values that continue over
several lines (arrays, multi-line strings). Used for enforcer.toml and control.toml.
"""

from __future__ import annotations

import json
import re

__all__ = ["KeyPath", "key_lines", "line_of"]

KeyPath = tuple[str | int, ...]
"""("devices", "rule", 1, "label"): table names and keys, with array indices as ints."""

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_ARRAY_HEADER = re.compile(rf"\s*\[\[\s*({_DOTTED_KEY})\s*\]\]")
_TABLE_HEADER = re.compile(rf"\s*\[\s*({_DOTTED_KEY})\s*\]")
_KEY_VALUE = re.compile(rf"\s*({_DOTTED_KEY})\s*=")
_BASIC_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_LITERAL_STRING = re.compile(r"'[^']*'")
_INLINE_KEY = re.compile(rf"[{{,]\s*({_DOTTED_KEY})\s*=")


def _key_parts(dotted: str) -> list[str]:
    parts = []
    for part in re.findall(_KEY_PART, dotted):
        if part.startswith('"'):
            try:
                part = json.loads(part)  # TOML's basic-string escapes are JSON's, near enough
            except ValueError:
                part = part[1:-1]
        elif part.startswith("'"):
            part = part[1:-1]
        parts.append(part)
    return parts


def key_lines(text: str) -> dict[KeyPath, int]:
    """The line (1-based) where each key path is first written; tomllib gives no line numbers
    for the errors found after parsing, so they are found here by scanning the text."""
    lines: dict[KeyPath, int] = {}
    arrays: dict[tuple[str, ...], int] = {}  # array-of-tables path -> index of the latest
    table: KeyPath = ()
    depth = 0  # open brackets of a value that continues on the next lines
    quote: str | None = None  # the open multi-line string's delimiter

    def resolve(parts: list[str]) -> KeyPath:
        out: list[str | int] = []
        names: list[str] = []
        for part in parts:
            names.append(part)
            out.append(part)
            if tuple(names) in arrays:
                out.append(arrays[tuple(names)])
        return tuple(out)

    for number, line in enumerate(text.splitlines(), start=1):
        if depth == 0 and quote is None:
            if m := _ARRAY_HEADER.match(line):
                parts = _key_parts(m.group(1))
                arrays[tuple(parts)] = arrays.get(tuple(parts), -1) + 1
                table = resolve(parts)
                lines.setdefault(table[:-1], number)
                lines.setdefault(table, number)
                continue
            if m := _TABLE_HEADER.match(line):
                table = resolve(_key_parts(m.group(1)))
                lines.setdefault(table, number)
                continue
            if m := _KEY_VALUE.match(line):
                key = (*table, *_key_parts(m.group(1)))
                lines.setdefault(key, number)
                for inline in _INLINE_KEY.finditer(_strip_strings(line[m.end() :])):
                    lines.setdefault((*key, *_key_parts(inline.group(1))), number)
                depth, quote = _scan(line[m.end() :], 0, None)
                continue
        depth, quote = _scan(line, depth, quote)
    return lines


def _strip_strings(value: str) -> str:
    """`value` with single-line string values blanked, so that `{a = "x, b = y"}` has one key."""
    return re.sub(r"""=\s*("(?:[^"\\]|\\.)*"|'[^']*')""", '= ""', value)


def _scan(text: str, depth: int, quote: str | None) -> tuple[int, str | None]:
    """Bracket depth and open multi-line string after `text`, ignoring strings and comments."""
    i = 0
    while i < len(text):
        if quote is not None:
            end = text.find(quote, i)
            if end < 0:
                return depth, quote
            i = end + 3
            quote = None
            continue
        c = text[i]
        if text.startswith('"""', i) or text.startswith("'''", i):
            quote = text[i : i + 3]
            i += 3
            continue
        if c == "#":
            break
        if c in "\"'":
            m = (_BASIC_STRING if c == '"' else _LITERAL_STRING).match(text, i)
            i = m.end() if m else len(text)
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return depth, quote


def line_of(lines: dict[KeyPath, int], key: KeyPath) -> int | None:
    """The line of `key`, else of its nearest enclosing table or key that has one."""
    for n in range(len(key), -1, -1):
        line = lines.get(key[:n])
        if line is not None:
            return line
    return None
