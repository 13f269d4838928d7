"""A commit's spec files read into documents: applications, deployments and vaults (without
secret values), told apart by an optional ``kind:`` or else by their shape. Pure: bytes in,
documents or errors (file, path, message) out. The same validators as `edge-control app push`,
`deploy` and `vault create`; a Compose file converts as `app push -f` converts it.
"""

from __future__ import annotations

import enum
import hashlib
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from control.fleet import deployments as dep
from control.model import NAME, canonical_json
from enforcer.shared import labels as label_expr
from enforcer.shared.spec.compose import ComposeError, convert_compose, is_compose
from enforcer.shared.spec.parse import (
    MAX_SPEC_VALUES,
    SpecError,
    SpecLoader,
    application_to_document,
    parse_application,
)

MAX_FILE_BYTES = 1024 * 1024  # a spec file read from Git
MAX_SPEC_FILES = 2000  # spec files under a source's path
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
UNSEAL_MODES = ("local", "remote")
_VAULT_FIELDS = {"name", "distribute", "unseal"}


class Kind(enum.Enum):
    APPLICATION = "application"
    DEPLOYMENT = "deployment"
    VAULT = "vault"


@dataclass(frozen=True)
class PlanError:
    """One problem in a commit: the file (relative to the source's path), where in it, what."""

    file: str
    path: str  # "" for the file as a whole
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}" if where else self.message

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "path": self.path, "message": self.message}


@dataclass(frozen=True)
class Document:
    """One validated document of a commit, in its canonical form."""

    kind: Kind
    name: str
    file: str
    body: dict[str, Any] = field(compare=False)
    version: str = ""  # applications: the version; deployments: the version they name
    digest: str = ""  # applications: of the canonical document
    application: str = ""  # deployments: the application they place


def is_spec_file(path: str) -> bool:
    """Whether a file under the source's path is read: YAML or JSON, nothing hidden."""
    parts = path.split("/")
    return path.endswith(SPEC_SUFFIXES) and not any(p.startswith(".") for p in parts)


def read_file(name: str, content: bytes, tenant: str) -> tuple[list[Document], list[PlanError]]:
    """The documents in one file (several YAML documents may be separated by ``---``)."""
    if len(content) > MAX_FILE_BYTES:
        return [], [
            PlanError(name, "", f"the file is {len(content)} bytes; at most {MAX_FILE_BYTES}")
        ]
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return [], [PlanError(name, "", f"not UTF-8 text (bad byte at offset {e.start})")]
    loader = SpecLoader(text)
    raw: list[Any] = []
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            raw.append(loader.get_data())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}" if mark is not None else ""
        return [], [PlanError(name, where, f"not valid YAML: {e.problem or e.context}")]
    except (yaml.YAMLError, RecursionError) as e:
        return [], [PlanError(name, "", f"not valid YAML: {e}")]
    finally:
        loader.dispose()
    documents: list[Document] = []
    errors: list[PlanError] = []
    raw = [d for d in raw if d is not None]
    for index, value in enumerate(raw):
        label = name if len(raw) == 1 else f"{name} (document {index + 1})"
        document, problems = read_document(label, value, tenant)
        errors += problems
        if document is not None:
            documents.append(document)
    return documents, errors


def read_document(file: str, value: Any, tenant: str) -> tuple[Document | None, list[PlanError]]:
    """One loaded document: its kind from ``kind:`` or its shape, then that kind's validator."""
    if not isinstance(value, dict):
        return None, [PlanError(file, "", "a spec file holds a mapping")]
    body = dict(value)
    kind_value = body.pop("kind", None)
    if kind_value is not None:
        kinds = {k.value: k for k in Kind}
        if kind_value not in kinds:
            known = ", ".join(kinds)
            return None, [PlanError(file, "kind", f"{kind_value!r} is not one of {known}")]
        kind = kinds[kind_value]
    elif "services" in body:
        kind = Kind.APPLICATION
    elif "application" in body:
        kind = Kind.DEPLOYMENT
    elif "distribute" in body:
        kind = Kind.VAULT
    else:
        return None, [
            PlanError(
                file,
                "",
                "not an application (services:), a deployment (application:) or a vault "
                "(distribute:); or say which with kind:",
            )
        ]
    if kind is Kind.APPLICATION:
        return _application(file, body, tenant)
    if kind is Kind.DEPLOYMENT:
        return _deployment(file, body)
    return _vault(file, body)


def _application(
    file: str, body: dict[str, Any], tenant: str
) -> tuple[Document | None, list[PlanError]]:
    if is_compose(body):
        try:
            body = convert_compose(
                body, directory=posixpath.dirname(file) or ".", environ={}
            ).document
        except ComposeError as e:
            return None, [PlanError(file, "", f"Compose: {line}") for line in e.errors]
    try:
        app = parse_application(body, tenant=tenant)
    except SpecError as e:
        return None, [PlanError(file, f.path, f.message) for f in e.errors]
    canonical = application_to_document(app)
    digest = hashlib.sha256(canonical_json(canonical)).hexdigest()
    return Document(Kind.APPLICATION, app.name, file, canonical, app.version, digest), []


def _deployment(file: str, body: dict[str, Any]) -> tuple[Document | None, list[PlanError]]:
    try:
        spec = dep.parse_deployment(body)
    except dep.DeploymentError as e:
        return None, [PlanError(file, p, m) for p, m in e.errors]
    canonical = dep.deployment_to_document(spec)
    return (
        Document(
            Kind.DEPLOYMENT,
            spec.name,
            file,
            canonical,
            version=spec.version,
            application=spec.application,
        ),
        [],
    )


def _vault(file: str, body: Mapping[str, Any]) -> tuple[Document | None, list[PlanError]]:
    errors: list[PlanError] = []
    for key in body:
        if key in ("secrets", "values", "data"):
            errors.append(
                PlanError(
                    file,
                    str(key),
                    "a vault file holds no secret values (put them with `edge-control secret "
                    "put`): Git is no place for them",
                )
            )
        elif key not in _VAULT_FIELDS:
            errors.append(PlanError(file, str(key), "unknown field"))
    name = body.get("name")
    if not isinstance(name, str) or len(name) > 63 or not NAME.fullmatch(name):
        errors.append(PlanError(file, "name", f"{name!r} is not a DNS label"))
    distribute = body.get("distribute")
    if not isinstance(distribute, str):
        errors.append(PlanError(file, "distribute", "a label expression is required"))
    else:
        try:
            label_expr.parse(distribute)
        except label_expr.LabelSyntaxError as e:
            errors.append(PlanError(file, "distribute", str(e)))
    unseal = body.get("unseal", "local")
    if unseal not in UNSEAL_MODES:
        errors.append(PlanError(file, "unseal", f"{unseal!r} is not one of local, remote"))
    if errors:
        return None, errors
    assert isinstance(name, str) and isinstance(distribute, str)
    canonical = {"name": name, "distribute": distribute, "unseal": str(unseal)}
    return Document(Kind.VAULT, name, file, canonical), []


__all__ = [
    "MAX_FILE_BYTES",
    "MAX_SPEC_FILES",
    "MAX_SPEC_VALUES",
    "Document",
    "Kind",
    "PlanError",
    "is_spec_file",
    "read_document",
    "read_file",
]
