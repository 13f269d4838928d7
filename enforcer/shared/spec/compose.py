"""Compose files as application specs (docs/compose.md; DESIGN.md, "Specs from Git and from
Compose").

`is_compose` tells a Compose file from a spec: a Compose file's ``services`` is a mapping of
names to services, a spec's is a list. `convert_compose` interpolates the file's variables,
checks it against the Compose specification's schema when one is given, and converts it to an
application spec document, with a warning naming every key that has no equivalent. A file that
cannot be converted raises `ComposeError` listing every problem with its path.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from enforcer.shared.spec.compose_env import interpolate_document
from enforcer.shared.spec.compose_schema import schema_errors
from enforcer.shared.spec.compose_service import service
from enforcer.shared.spec.compose_values import Context
from enforcer.shared.spec.fields import describe
from enforcer.shared.spec.parse import SpecError, parse_application

__all__ = ["ComposeError", "Conversion", "convert_compose", "is_compose", "project_name"]

_TOP_LEVEL = ("name", "services", "networks", "volumes", "secrets")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_EXTENSION_KEYS = ("version", "devices")
_SPEC_SERVICE = re.compile(r"\bservices\[(\d+)\]")


class ComposeError(ValueError):
    """A Compose file that cannot be converted; ``str()`` is one ``path: message`` line per
    problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Conversion:
    document: dict[str, Any]  # the application spec
    warnings: tuple[str, ...]  # "path: what was ignored, and why"


def is_compose(document: object) -> bool:
    """Whether `document` is a Compose file: a mapping whose ``services`` is a mapping (a
    spec's ``services`` is a list)."""
    return isinstance(document, dict) and isinstance(document.get("services"), dict)


def project_name(document: Mapping[str, Any], directory: str, name: str | None = None) -> str:
    """The application's name: `name` (``--name``), else the file's ``name:``, else the name of
    the file's directory as Compose makes it (lower case, only letters, digits, "-" and "_"),
    with "_" as "-". Raises ComposeError when the result is not a spec name."""
    given = name if name is not None else document.get("name")
    source = "--name" if name is not None else "name"
    if given is None:
        derived = re.sub(r"[^a-z0-9_-]", "", directory.lower()).replace("_", "-").strip("-")
        if not _DNS_LABEL.fullmatch(derived):
            raise ComposeError(
                [
                    f'name: the directory "{directory}" gives no application name; '
                    "give one with name: or --name"
                ]
            )
        return derived
    if not isinstance(given, str) or not _DNS_LABEL.fullmatch(given):
        raise ComposeError(
            [
                f'{source}: "{given}" is not an application name: use at most 63 '
                'lower-case letters, digits and "-", starting and ending with a '
                "letter or digit"
            ]
        )
    return given


def convert_compose(
    document: object,
    *,
    directory: str,
    environ: Mapping[str, str],
    name: str | None = None,
    schema: Mapping[str, Any] | None = None,
) -> Conversion:
    """The application spec that Compose file `document` (from `directory`) describes.

    `environ` holds the variables for interpolation (the process environment over the ``.env``
    file); `schema`, the Compose specification's JSON schema, checks the file first when given.
    Raises ComposeError listing every problem.
    """
    if not is_compose(document):
        raise ComposeError(["services: a Compose file has a services mapping (name: service)"])
    assert isinstance(document, dict)
    interpolated, warnings, errors = interpolate_document(document, environ)
    assert isinstance(interpolated, dict)
    if schema is not None and not errors:
        errors = schema_errors(schema, interpolated)
        if errors:  # wrong types: converting as well would say the same again
            raise ComposeError(errors)
    ctx = Context(environ=environ, warnings=warnings, errors=errors)
    _top_level(ctx, interpolated)
    app_name = ""
    try:
        app_name = project_name(interpolated, directory, name)
    except ComposeError as exc:
        ctx.errors += exc.errors
    services = _started(ctx, interpolated["services"])
    if not services:
        ctx.error("services", "at least one service is required")
    ctx.service_names = frozenset(str(n) for n in services)
    converted = [service(ctx, str(n), v) for n, v in services.items()]
    _shared_volumes(ctx, services)
    if ctx.errors:
        raise ComposeError(ctx.errors)
    spec: dict[str, Any] = {"name": app_name, "version": "", "services": converted}
    extension = interpolated.get("x-edgeward") or {}
    spec["version"] = str(extension.get("version") or _content_version(spec))
    try:
        parse_application(spec)
    except SpecError as exc:
        names = list(services)
        raise ComposeError(
            [_compose_path(str(e), names) + " (in the converted spec)" for e in exc.errors]
        ) from None
    return Conversion(spec, tuple(ctx.warnings))


def _top_level(ctx: Context, document: dict[str, Any]) -> None:
    for key in document:
        if key == "version":
            ctx.ignored("version", "obsolete in Compose")
        elif key == "configs":
            ctx.ignored("configs", "not supported (use a config-map volume in a spec)")
        elif key not in _TOP_LEVEL and not str(key).startswith("x-"):
            ctx.error(
                str(key),
                "is not a key of a Compose file (name, services, networks, "
                "volumes, secrets, configs, or x-... extensions); refused so "
                "that a misspelt section is not dropped",
            )
    for section in ("volumes", "networks", "secrets"):
        value = document.get(section) or {}
        definitions = ctx.mapping(section, value)
        if definitions is None:
            continue
        for name, options in definitions.items():
            if options is not None and ctx.mapping(f"{section}.{name}", options) is None:
                continue
            for key in options or {}:
                if section == "volumes" or (section == "networks" and key != "internal"):
                    ctx.ignored(f"{section}.{name}.{key}", _WHY.get(key, "not supported"))
        setattr(ctx, section, definitions)
    if len(ctx.networks) > 1:
        ctx.warn(
            "networks",
            "the services of an application share its one network, so "
            "Compose's separation between networks is not kept",
        )
    extension = document.get("x-edgeward")
    if extension is None:
        return
    options = ctx.mapping("x-edgeward", extension)
    for key in options or {}:
        if key not in _EXTENSION_KEYS:
            ctx.error(
                f"x-edgeward.{key}",
                f"is not an Edgeward setting (use {', '.join(_EXTENSION_KEYS)})",
            )
    if options and "devices" in options:
        devices = ctx.mapping("x-edgeward.devices", options["devices"]) or {}
        ctx.devices = {str(k): str(v) for k, v in devices.items()}
    if options and not isinstance(options.get("version", ""), (str, int, float)):
        ctx.error("x-edgeward.version", f"expected a string, got {describe(options['version'])}")


_WHY = {
    "external": "not supported (the application gets its own)",
    "driver": "not supported (Docker's local driver is used)",
    "driver_opts": "not supported (Docker's local driver is used)",
}


def _started(ctx: Context, services: dict[str, Any]) -> dict[str, Any]:
    """The services Compose starts by default: those without ``profiles``."""
    started = {}
    for name, svc in services.items():
        profiles = svc.get("profiles") if isinstance(svc, dict) else None
        if profiles:
            ctx.warn(
                f"services.{name}",
                f"has profiles ({', '.join(map(str, profiles))}), so "
                "Compose does not start it by default; left out",
            )
        else:
            started[name] = svc
    return started


def _shared_volumes(ctx: Context, services: Mapping[str, Any]) -> None:
    users: dict[str, list[str]] = {}
    for name, svc in services.items():
        entries = svc.get("volumes", []) if isinstance(svc, dict) else []
        for entry in entries if isinstance(entries, list) else []:
            source = (
                entry.split(":")[0]
                if isinstance(entry, str) and ":" in entry
                else (entry.get("source") if isinstance(entry, dict) else None)
            )
            if source in ctx.volumes and name not in users.setdefault(str(source), []):
                users[str(source)].append(str(name))
    for volume, names in users.items():
        if len(names) > 1:
            ctx.warn(
                f"volumes.{volume}",
                f"is used by {' and '.join(names)}: each service "
                "gets a volume of its own (instances may run on "
                "different hosts)",
            )


def _content_version(spec: Mapping[str, Any]) -> str:
    """A version that changes exactly when the converted spec does."""
    text = json.dumps(spec["services"], sort_keys=True, separators=(",", ":"))
    return "compose-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _compose_path(error: str, names: Sequence[Any]) -> str:
    def service_name(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return f"services.{names[index]}" if index < len(names) else match.group()

    return _SPEC_SERVICE.sub(service_name, error)
