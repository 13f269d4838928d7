"""Compose's variable interpolation and its ``.env`` file (docs/compose.md, "Variables").

Every string value of a Compose file (not its keys) is interpolated as Compose does, before
anything else reads it: ``$VAR`` and ``${VAR}``; ``${VAR:-default}`` (unset or empty) and
``${VAR-default}`` (unset); ``${VAR:?message}`` and ``${VAR?message}`` (an error);
``${VAR:+other}`` and ``${VAR+other}``; ``$$`` is a literal ``$``. Defaults may themselves hold
references (``${A:-${B}}``). An unset variable without a default becomes "" with a warning; a
``$`` followed by anything else is an error (write ``$$``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["Interpolation", "interpolate", "interpolate_document", "parse_dotenv"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$$"}
MAX_DEPTH = 8  # nested defaults: ${A:-${B:-${C}}}


class Interpolation:
    """The variables a Compose file is interpolated with, and the unset ones it used."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.unset: list[str] = []

    def value(self, text: str, depth: int = 0) -> str:
        """`text` interpolated; raises ValueError for a bad reference or a ``:?`` error."""
        out: list[str] = []
        i = 0
        while True:
            j = text.find("$", i)
            if j == -1:
                out.append(text[i:])
                return "".join(out)
            out.append(text[i:j])
            following = text[j + 1 : j + 2]
            if following == "$":
                out.append("$")
                i = j + 2
            elif following == "{":
                close = _closing_brace(text, j + 2)
                if close == -1:
                    raise ValueError(f'"${{" at offset {j} is not closed by "}}"')
                out.append(self._braced(text[j + 2 : close], depth))
                i = close + 1
            else:
                match = _NAME.match(text, j + 1)
                if match is None:
                    raise ValueError(
                        f'"{text[j : j + 2]}" at offset {j} is not a variable reference '
                        '(write "$$" for a literal "$")'
                    )
                out.append(self._lookup(match.group(), None, depth))
                i = match.end()

    def _braced(self, body: str, depth: int) -> str:
        match = _NAME.match(body)
        if match is None:
            raise ValueError(
                f'"${{{body}}}" is not a valid reference: a name is letters, digits '
                'and "_", not starting with a digit'
            )
        name, rest = match.group(), body[match.end() :]
        if not rest:
            return self._lookup(name, None, depth)
        for op in _OPERATORS:
            if rest.startswith(op):
                return self._lookup(name, (op, rest[len(op) :]), depth)
        raise ValueError(f'"${{{body}}}" is not a valid reference')

    def _lookup(self, name: str, operation: tuple[str, str] | None, depth: int) -> str:
        value = self.environ.get(name)
        if operation is None:
            if value is None:
                self.unset.append(name)
            return value or ""
        op, argument = operation
        if depth >= MAX_DEPTH:
            raise ValueError(f"references are nested more than {MAX_DEPTH} levels deep")
        empty_counts = op.startswith(":")
        missing = value is None or (empty_counts and value == "")
        if op in (":-", "-"):
            return self.value(argument, depth + 1) if missing else value or ""
        if op in (":?", "?"):
            if missing:
                message = self.value(argument, depth + 1) or "is required"
                raise ValueError(
                    f"variable {name} {'is empty' if value == '' else 'is not set'}: {message}"
                )
            return value or ""
        return "" if missing else self.value(argument, depth + 1)  # :+ and +


def _closing_brace(text: str, start: int) -> int:
    """The offset of the "}" that closes a "${" whose body starts at `start` (nested "${"s
    counted), or -1."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """`text` interpolated with `environ` (unset variables become ""); raises ValueError."""
    return Interpolation(environ).value(text)


def interpolate_document(
    document: object, environ: Mapping[str, str], path: str = ""
) -> tuple[object, list[str], list[str]]:
    """`document` with every string value interpolated, the warnings (unset variables) and the
    errors, each ``path: message``."""
    warnings: list[str] = []
    errors: list[str] = []

    def walk(value: object, at: str) -> object:
        if isinstance(value, str):
            interpolation = Interpolation(environ)
            try:
                result = interpolation.value(value)
            except ValueError as exc:
                errors.append(f"{at or '(top)'}: {exc}")
                return value
            for name in dict.fromkeys(interpolation.unset):
                warnings.append(f"{at}: variable {name} is not set; using an empty string")
            return result
        if isinstance(value, dict):
            return {k: walk(v, f"{at}.{k}" if at else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{at}[{i}]") for i, v in enumerate(value)]
        return value

    return walk(document, path), warnings, errors


def parse_dotenv(text: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of a ``.env`` file: ``NAME=value`` lines (``export`` allowed), ``#``
    comments, values unquoted (an inline `` #`` starts a comment), in single quotes (literal)
    or in double quotes (``\\n``, ``\\"``, ``\\\\`` escapes). Unquoted and double-quoted values
    are interpolated with `environ` and the lines above. Raises ValueError naming the line."""
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(f'line {number}: expected NAME=value, got "{line[:40]}"')
        name, value = match.groups()
        try:
            result[name] = _dotenv_value(value, {**environ, **result})
        except ValueError as exc:
            raise ValueError(f"line {number}: {name}: {exc}") from None
    return result


def _dotenv_value(value: str, environ: Mapping[str, str]) -> str:
    if value.startswith("'"):
        end = value.find("'", 1)
        if end == -1:
            raise ValueError("the single quote is not closed")
        return value[1:end]
    if value.startswith('"'):
        out: list[str] = []
        i = 1
        while i < len(value) and value[i] != '"':
            if value[i] == "\\" and i + 1 < len(value):
                out.append(_ESCAPES.get(value[i + 1], "\\" + value[i + 1]))
                i += 2
            else:
                out.append(value[i])
                i += 1
        if i >= len(value):
            raise ValueError("the double quote is not closed")
        return interpolate("".join(out), environ)
    comment = re.search(r"\s#", value)
    if comment is not None:
        value = value[: comment.start()]
    return interpolate(value.strip(), environ)
