"""Reading one spec document field by field, recording every problem with its path.

`Reader` opens mappings and lists and reads strings, reporting each problem as a `FieldError`
(``services[0].containers[1].image: ...``) and going on with a fallback, so that one pass
finds everything. `Fields` are the known fields of one mapping. Every string read refuses
control characters (NUL, the C0 and C1 controls, Unicode bidirectional overrides); tab, line
feed and carriage return only where multi-line text is allowed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from enforcer.shared.spec.limits import MAX_VALUE_LENGTH, SYSTEM_VALUE_LENGTH
from enforcer.shared.spec.variables import SYSTEM_VARIABLES, expanded_length, references
from enforcer.shared.units import parse_duration

__all__ = ["FieldError", "Fields", "Reader", "describe", "has_control", "join", "names", "shown"]

_T = TypeVar("_T")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
# NUL and the C0 controls, DEL and the C1 controls, and the bidirectional overrides and
# isolates (U+202A-U+202E, U+2066-U+2069) that make text read differently from what it is
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MULTI_LINE = frozenset("\t\n\r")


@dataclass(frozen=True)
class FieldError:
    """One problem in a spec: where (``services[0].replicas``) and what."""

    path: str  # "" for the document as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def has_control(text: str) -> bool:
    """Whether `text` holds a control character or a bidirectional override."""
    return _CONTROL.search(text) is not None


def shown(text: str) -> str:
    """`text` as it may be printed: control characters written as escapes (``\\u202e``)."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def join(path: str, key: str) -> str:
    if _PLAIN_KEY.fullmatch(key) is None:
        escaped = shown(key.replace("\\", "\\\\").replace('"', '\\"'))
        return f'{path}["{escaped}"]'
    return f"{path}.{key}" if path else key


def describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f'a string ("{shown(value)}")' if len(value) <= 40 else "a string"
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "a mapping"
    return f"a {type(value).__name__} ({value})"  # YAML dates and times


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def names(value: object) -> list[tuple[int, str]]:
    """(index, name) of the mappings in list `value` that have a string name."""
    if not isinstance(value, list):
        return []
    return [
        (i, e["name"])
        for i, e in enumerate(value)
        if isinstance(e, dict) and isinstance(e.get("name"), str)
    ]


class Fields:
    """The known fields of one mapping; each reader reports problems with the field's path and
    returns a fallback. Absent fields give the fallback silently (missing required fields are
    reported when the mapping is opened)."""

    def __init__(self, checker: Reader, path: str, values: dict[str, object]) -> None:
        self.checker, self.path, self.values = checker, path, values

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def at(self, key: str) -> str:
        return join(self.path, key)

    def string(self, key: str, *, empty: bool = False, multiline: bool = False) -> str:
        if key not in self:
            return ""
        return self.checker.string(self.at(key), self.values[key], empty, multiline=multiline)

    def name(self, key: str = "name") -> str:
        text = self.string(key)
        if text and (len(text) > 63 or _DNS_LABEL.fullmatch(text) is None):
            self.checker.error(
                self.at(key),
                f'"{text}" is not a valid name: use at most 63 lower-case letters, digits and '
                '"-", starting and ending with a letter or digit',
            )
        return text

    def integer(self, key: str, default: int, low: int, high: int | None = None) -> int:
        if key not in self:
            return default
        value = self.values[key]
        if not isinstance(value, int) or isinstance(value, bool):
            self.checker.error(self.at(key), f"expected a whole number, got {describe(value)}")
            return default
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.checker.error(self.at(key), f"must be {bounds}, got {value}")
        return value

    def port(self, key: str, default: int = 1) -> int:
        return self.integer(key, default, 1, 65535)

    def choice(self, key: str, choices: Mapping[str, _T], default: _T) -> _T:
        value = self.values.get(key)
        if key not in self:
            return default
        if isinstance(value, str) and value in choices:
            return choices[value]
        given = f'"{shown(value)}"' if isinstance(value, str) else describe(value)
        self.checker.error(self.at(key), f"{given} is not one of: {', '.join(choices)}")
        return default

    def duration(self, key: str, default: float, *, positive: bool = True) -> float:
        value, path = self.values.get(key), self.at(key)
        if key not in self:
            return default
        if is_number(value):
            self.checker.error(path, f'{value} is not a duration: add a unit, e.g. "{value}s"')
            return default
        if not isinstance(value, str):
            self.checker.error(path, f"expected a duration such as 10s, got {describe(value)}")
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.checker.error(path, str(exc))
            return default
        if positive and seconds <= 0:
            self.checker.error(path, "must be longer than 0s")
        return seconds

    def list(
        self, key: str, read: Callable[[str, object], _T | None], most: int | None = None
    ) -> list[_T]:
        if key not in self:
            return []
        return self.checker.items(self.at(key), self.values[key], read, most)

    def strings(
        self, key: str, most: int | None = None, *, multiline: bool = False
    ) -> tuple[str, ...]:
        def read(path: str, value: object) -> str:
            return self.checker.string(path, value, True, multiline=multiline)

        return tuple(self.list(key, read, most))

    def sub(self, key: str, allowed: Collection[str], required: Collection[str] = ()) -> Fields:
        """The nested mapping `key` (absent: an empty one)."""
        nested = self.checker.fields(self.at(key), self.values.get(key, {}), allowed, required)
        return nested if nested is not None else Fields(self.checker, self.at(key), {})

    def unique_names(self, key: str, what: str) -> None:
        """Reports elements of list `key` whose name an earlier element already has."""
        named = names(self.values.get(key))
        self.checker.unique(((f"{self.at(key)}[{i}].name", n, f'"{n}"') for i, n in named), what)


class Reader:
    """Reads one document, recording every problem in `errors` instead of stopping."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.variables: frozenset[str] = frozenset()  # names ${NAME} may use in this service
        self.declared: frozenset[str] = frozenset()  # the variables of this service
        # the most characters each of those can stand for once expanded
        self.lengths: dict[str, int] = dict.fromkeys(SYSTEM_VARIABLES, SYSTEM_VALUE_LENGTH)
        self.secret_variables: frozenset[str] = frozenset()  # of those, the secret-derived ones
        self.volumes: frozenset[str] = frozenset()  # volume names of this service

    def error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def fields(
        self, path: str, value: object, allowed: Collection[str], required: Collection[str] = ()
    ) -> Fields | None:
        """Opens mapping `value`: unknown and missing fields are reported, nulls dropped."""
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {describe(value)}")
            return None
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                self.error(join(path, str(key)), f"unknown field{hint}")
        for key in required:
            if key not in value:
                self.error(join(path, key), "required field is missing")
        known = {
            k: v for k, v in value.items() if k in allowed and (v is not None or k in required)
        }
        return Fields(self, path, known)

    def string(
        self, path: str, value: object, empty: bool = False, *, multiline: bool = False
    ) -> str:
        """A string; one with a control character is reported and read as "" (only tab,
        line feed and carriage return are allowed, and only where `multiline`)."""
        if isinstance(value, str):
            if not value and not empty:
                self.error(path, "must not be empty")
            for found in _CONTROL.finditer(value):
                if multiline and found.group() in _MULTI_LINE:
                    continue
                code = f"U+{ord(found.group()):04X}"
                where = f"at offset {found.start()}"
                what = {"\t": "a tab", "\n": "a line break", "\r": "a carriage return"}.get(
                    found.group(), "a control character"
                )
                if 0x202A <= ord(found.group()) <= 0x2069:
                    what = "a bidirectional override"
                self.error(path, f"contains {what} ({code} {where}); it is not allowed here")
                return ""
            return value
        scalar = value is not None and not isinstance(value, (list, dict))
        hint = "; put it in quotes" if scalar else ""
        self.error(path, f"expected a string, got {describe(value)}{hint}")
        return ""

    def items(
        self,
        path: str,
        value: object,
        read: Callable[[str, object], _T | None],
        most: int | None = None,
    ) -> list[_T]:
        """`read` applied to each element of list `value`, failures left out; a list longer
        than `most` is reported and only its first `most` elements are read."""
        if not isinstance(value, list):
            self.error(path, f"expected a list, got {describe(value)}")
            return []
        if most is not None and len(value) > most:
            self.error(path, f"has {len(value)} entries; at most {most} are allowed")
            value = value[:most]
        results = (read(f"{path}[{i}]", element) for i, element in enumerate(value))
        return [result for result in results if result is not None]

    def unique(self, entries: Iterable[tuple[str, Hashable, str]], what: str) -> None:
        """Reports entries (path, key, shown) whose key an earlier entry already used."""
        seen: dict[Hashable, str] = {}
        for path, key, shown in entries:
            if key in seen:
                self.error(path, f"duplicate {what} {shown} (first at {seen[key]})")
            elif key != "":
                seen[key] = path

    def references(
        self,
        path: str,
        text: str,
        *,
        secrets_allowed: bool = True,
        limit: int = MAX_VALUE_LENGTH,
    ) -> int:
        """Reports references to undefined variables (and to secrets where `secrets_allowed` is
        off) and a text longer than `limit` once expanded; gives that length at most."""
        try:
            names = references(text)
            length = expanded_length(text, self.lengths)
        except ValueError as exc:
            self.error(path, str(exc))
            return len(text)
        if length > limit and not names - self.variables:
            self.error(
                path,
                f"can be {length} characters long once its variables are expanded; "
                f"at most {limit} are allowed",
            )
        if not secrets_allowed:
            for name in sorted(names & self.secret_variables):
                self.error(
                    path,
                    f"${{{name}}} holds a secret: use it only in a container's env, or mount "
                    "the secret as a secret volume (files here are not kept secret)",
                )
        for name in sorted(names - self.variables):
            if name in self.declared:
                message = (
                    f"${{{name}}} is defined below this variable: a variable's value can use "
                    "only the system variables and the variables above it"
                )
            else:
                message = (
                    f"undefined variable ${{{name}}}: define it in the service's variables "
                    f"(system variables: {', '.join(SYSTEM_VARIABLES)})"
                )
            self.error(path, message)
        return length
