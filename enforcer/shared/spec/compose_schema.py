"""The Compose specification's JSON schema, read at run time from the package that ships it
(Debian's docker-compose), never copied into Edgeward (docs/compose.md, "Checks").

`load_schema` is the thin loader (it reads a file); `schema_errors` checks a document with
jsonschema. Keys that the schema does not know are left to the conversion, which warns about
each of them (or refuses it), so the schema only adds what it is good at: wrong types and
values.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_PATHS", "load_schema", "schema_errors"]

SCHEMA_PATHS = (Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json"),)
_MAX_ERRORS = 50


def load_schema(paths: Iterable[Path] | None = None) -> tuple[dict[str, Any] | None, str]:
    """The schema (from `paths`, default `SCHEMA_PATHS`), or None and a note saying why the
    file is converted without it."""
    paths = list(SCHEMA_PATHS if paths is None else paths)
    try:
        importlib.import_module("jsonschema")
    except ImportError:
        return None, "jsonschema is not installed: the file is converted without the Compose schema"
    for path in paths:
        try:
            schema = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            return None, f"{path} cannot be read ({exc}): the file is converted without it"
        if isinstance(schema, dict):
            return schema, ""
    shown = ", ".join(str(p) for p in paths)
    return None, (
        f"the Compose schema ({shown}, from Debian's docker-compose) is not installed: "
        "the file is converted without it"
    )


def schema_errors(schema: Mapping[str, Any], document: object) -> list[str]:
    """Every type or value error of `document` under `schema` (``path: message``), leaving out
    unknown keys."""
    jsonschema = importlib.import_module("jsonschema")
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)
    found: list[str] = []
    for error in validator.iter_errors(_jsonable(document)):
        for problem in _problems(error):
            found.append(f"{_path(problem.absolute_path)}: {problem.message} (Compose "
                         "specification)")  # fmt: skip
        if len(found) >= _MAX_ERRORS:
            break
    return found[:_MAX_ERRORS]


def _problems(error: Any) -> list[Any]:
    """The errors worth telling of `error`: for a oneOf/anyOf, those of the first branch that
    has the value's type (or `error` itself when none has); never an unknown key, nor a number
    or a boolean written as a string (Compose reads "8080" as 8080 after interpolation)."""
    if error.validator == "additionalProperties" or _numeric_string(error):
        return []
    if not error.context:
        return [error]
    branches: dict[Any, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.schema_path[0], []).append(sub)
    for subs in branches.values():
        if not any(s.validator == "type" and not s.relative_path for s in subs):
            return [p for s in subs for p in _problems(s)]
    return [] if any(_numeric_string(s) for s in error.context) else [error]


def _numeric_string(error: Any) -> bool:
    expected = error.validator_value if error.validator == "type" else None
    if not isinstance(error.instance, str) or expected is None:
        return False
    types = {expected} if isinstance(expected, str) else set(expected)
    text = error.instance.strip()
    if types & {"boolean"} and text.lower() in ("true", "false"):
        return True
    try:
        number = float(text)
    except ValueError:
        return False
    return bool(types & {"number"}) or (bool(types & {"integer"}) and number.is_integer())


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _jsonable(value: object) -> object:
    """YAML's dates and non-string keys as JSON would have them."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
