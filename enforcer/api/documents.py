"""Spec documents as sent to the API: YAML or JSON text into a plain mapping.

Shared by the server (request bodies) and the CLI (`apply -f`, to report syntax errors with
line and column before anything is sent). Only syntax is checked here; validating the spec is
the daemon's job. This module imports neither aiohttp nor the daemon, so the CLI stays fast.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml

from enforcer.shared.spec.parse import SpecLoader

__all__ = ["DocumentError", "Format", "format_for_media_type", "parse_document"]

Format = Literal["json", "yaml"]

_JSON_TYPES = {"application/json"}
_YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}


class DocumentError(ValueError):
    """The text is not a YAML/JSON mapping; str() says where and why, in one line."""


def format_for_media_type(media_type: str) -> Format | None:
    """ "json" or "yaml" for a Content-Type (without parameters); "" and
    application/octet-stream read as YAML, which also reads JSON; None for anything else."""
    media_type = media_type.strip().lower()
    if media_type in _JSON_TYPES or media_type.endswith("+json"):
        return "json"
    if media_type in _YAML_TYPES or media_type.endswith("+yaml"):
        return "yaml"
    if media_type in ("", "application/octet-stream"):
        return "yaml"
    return None


def parse_document(text: str | bytes, fmt: Format = "yaml") -> dict[str, Any]:
    """The mapping in `text`; raises DocumentError for syntax errors, duplicate keys, bytes
    that are not UTF-8, an empty text, or a document that is not a mapping."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise DocumentError("the document is empty")
    document = _load_json(text) if fmt == "json" else _load_yaml(text)
    if not isinstance(document, dict):
        raise DocumentError(
            f"the document must be a mapping (name: ..., services: ...), got {_kind(document)}"
        )
    return document


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _load_json(text: str) -> object:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise DocumentError(f'JSON: the key "{key}" is given twice in one object')
            out[key] = value
        return out

    def constant(name: str) -> float:
        raise DocumentError(f"JSON: {name} is not a number JSON allows")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise DocumentError(
            f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise DocumentError("JSON: the document is nested too deeply") from None


def _load_yaml(text: str) -> object:
    loader = SpecLoader(text)  # duplicate keys and deep nesting refused, as in specs
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if problem == "but found another document":
            problem = 'a second document starts here; give one document (remove the "---")'
        raise DocumentError(f"YAML syntax error{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"YAML error: {exc}") from None
    except RecursionError:
        raise DocumentError("YAML: the document is nested too deeply") from None
    finally:
        loader.dispose()
