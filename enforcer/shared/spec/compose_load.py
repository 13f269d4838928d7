"""Converting a Compose file that was read from a path: the ``.env`` file beside it, the
process environment and the Compose schema (the file-reading side of
`enforcer.shared.spec.compose`, used by ``edge-enforcer apply -f``, ``edge-control app push -f``
and ``edge-control app convert -f``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from enforcer.shared.spec.compose import ComposeError, Conversion, convert_compose
from enforcer.shared.spec.compose_env import parse_dotenv
from enforcer.shared.spec.compose_schema import load_schema

__all__ = ["convert_file"]

_noted = False


def convert_file(
    document: object,
    path: str,
    *,
    name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Conversion, list[str]]:
    """The conversion of Compose `document`, read from `path` ("-": standard input, beside the
    current directory), and notes for the user (once a process: no schema to check with).

    Variables come from `environ` (default: the process environment) over the ``.env`` file in
    the file's directory. Raises ComposeError listing every problem.
    """
    global _noted
    directory = Path.cwd() if path == "-" else Path(path).resolve().parent
    variables: dict[str, str] = {}
    dotenv = directory / ".env"
    if dotenv.is_file():
        try:
            text = dotenv.read_text(encoding="utf-8")
            variables = parse_dotenv(text, os.environ if environ is None else environ)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ComposeError([f"{dotenv}: {exc}"]) from None
    variables.update(os.environ if environ is None else environ)
    schema, note = load_schema()
    notes = [] if _noted or not note else [note]
    _noted = _noted or bool(note)
    document = with_env_files(document, directory, variables)
    conversion = convert_compose(
        document, directory=directory.name, environ=variables, name=name, schema=schema
    )
    return conversion, notes


def with_env_files(document: object, directory: Path, variables: Mapping[str, str]) -> object:
    """`document` with each service's ``env_file`` files (relative to `directory`, read as
    ``.env`` files are) put into its ``environment``, which wins over them, as in Compose.
    Raises ComposeError naming every file that cannot be read."""
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict):
        return document
    assert isinstance(document, dict)
    errors: list[str] = []
    converted = dict(services)
    for name, service in services.items():
        if not isinstance(service, dict) or "env_file" not in service:
            continue
        files = service["env_file"]
        from_files: dict[str, str] = {}
        for i, entry in enumerate([files] if isinstance(files, str) else files or []):
            at = f"services.{name}.env_file[{i}]"
            given, required = entry, True
            if isinstance(entry, dict):
                given, required = entry.get("path"), entry.get("required", True) is not False
            if not isinstance(given, str):
                errors.append(f"{at}: expected a file name, got {given!r}")
                continue
            path = directory / given
            try:
                from_files.update(parse_dotenv(path.read_text(encoding="utf-8"), variables))
            except FileNotFoundError:
                if required:
                    errors.append(f"{at}: {path} does not exist")
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                errors.append(f"{at}: {path}: {exc}")
        env: dict[str, object] = {k: v.replace("$", "$$") for k, v in from_files.items()}
        given_env = _environment(service.get("environment"))
        env.update({k: v for k, v in given_env.items() if v is not None or k not in env})
        converted[name] = {k: v for k, v in service.items() if k != "env_file"}
        converted[name]["environment"] = env
    if errors:
        raise ComposeError(errors)
    return {**document, "services": converted}


def _environment(value: object) -> dict[str, object]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        pairs = (str(e).partition("=") for e in value)
        return {key: text if equals else None for key, equals, text in pairs}
    return {}
