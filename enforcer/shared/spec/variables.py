"""``${NAME}`` references in spec strings (DESIGN.md, "Application spec").

``${NAME}`` is replaced by the value of variable NAME; ``$$`` is a literal ``$``; any other
``$`` is kept as it is (so ``sh -c 'echo $HOME'`` works). NAME is a letter or ``_`` followed by
letters, digits and ``_``. A ``${`` without its ``}`` or with a bad name is an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

__all__ = [
    "SYSTEM_VARIABLES",
    "expand",
    "expanded_length",
    "is_variable_name",
    "references",
]

SYSTEM_VARIABLES = (
    "SYS_SITE",
    "SYS_HOST",
    "SYS_TENANT",
    "SYS_APP",
    "SYS_SERVICE",
    "SYS_INSTANCE",
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_variable_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def _pieces(text: str) -> Iterator[tuple[str, bool]]:
    """`text` split into (literal, False) and (variable name, True) pieces.

    Raises ValueError for an unclosed ``${`` or an invalid name.
    """
    start = 0
    i = text.find("$")
    while i != -1:
        following = text[i + 1 : i + 2]
        if following == "$":
            yield text[start : i + 1], False
            start = i + 2
        elif following == "{":
            close = text.find("}", i + 2)
            if close == -1:
                raise ValueError(
                    f'"${{" at offset {i} is not closed by "}}" (write "$$" for a literal "$")'
                )
            name = text[i + 2 : close]
            if not is_variable_name(name):
                raise ValueError(
                    f'"${{{name}}}" is not a valid reference: a name is letters, digits and "_", '
                    "not starting with a digit"
                )
            yield text[start:i], False
            yield name, True
            start = close + 1
        i = text.find("$", start if following in ("$", "{") else i + 1)
    yield text[start:], False


def references(text: str) -> set[str]:
    """The variable names that `text` refers to with ``${NAME}``."""
    return {piece for piece, is_name in _pieces(text) if is_name}


def expanded_length(text: str, lengths: Mapping[str, int]) -> int:
    """The length of `text` once expanded, where variable NAME stands for ``lengths[NAME]``
    characters (0 for names `lengths` lacks). Raises ValueError as `references` does."""
    return sum(lengths.get(p, 0) if is_name else len(p) for p, is_name in _pieces(text))


def expand(text: str, values: Mapping[str, str]) -> str:
    """`text` with every ``${NAME}`` replaced by ``values[NAME]`` and ``$$`` by ``$``.

    Raises ValueError naming the variables that `values` lacks (never KeyError).
    """
    pieces = list(_pieces(text))
    missing = sorted({p for p, is_name in pieces if is_name and p not in values})
    if missing:
        listed = ", ".join(f"${{{name}}}" for name in missing)
        raise ValueError(f"undefined variable{'s' if len(missing) > 1 else ''} {listed}")
    return "".join(values[p] if is_name else p for p, is_name in pieces)
