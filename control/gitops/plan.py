"""What applying a commit of a Git source changes: the commit's documents against what control
holds and what the source owns now. Pure: either every error (file, path, message) or the
changes (create, update, remove), never half of them.

- An application file is one version of it; a version already at control with another spec is
  an error (versions are immutable: change the version). A removed application file removes
  every version of that application (pruning).
- A deployment names an application of the commit or one at control its tenant sees.
- A vault file creates the vault (empty) or changes its distribution; values never come from Git.
- What another source owns, or another tenant, is an error; what was made by hand in the
  source's tenants is adopted. With pruning off, what leaves the commit stays and is no longer
  owned (hand edits allowed again).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from control.fleet.deployments import LATEST
from control.gitops.documents import (
    MAX_SPEC_FILES,
    Document,
    Kind,
    PlanError,
    is_spec_file,
    read_file,
)

Owned = frozenset[tuple[Kind, str]]


class Action(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    REMOVE = "remove"


@dataclass(frozen=True)
class Change:
    action: Action
    kind: Kind
    name: str
    body: dict[str, Any] | None = field(default=None, compare=False)  # None for REMOVE
    version: str = ""  # applications
    digest: str = ""  # applications
    file: str = field(default="", compare=False)  # where it is defined (not for REMOVE)

    def __str__(self) -> str:
        what = f"{self.kind.value} {self.name}"
        return f"{self.action.value} {what}" + (f" version {self.version}" if self.version else "")


@dataclass(frozen=True)
class Existing:
    """What control holds now, as far as a plan needs it."""

    app_versions: Mapping[tuple[str, str], str] = field(default_factory=dict)  # -> digest
    app_tenants: Mapping[str, str] = field(default_factory=dict)  # application -> tenant
    deployments: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)
    vaults: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)
    owners: Mapping[tuple[Kind, str], str] = field(default_factory=dict)  # -> source name


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    owned: Owned  # what the source owns once the changes are applied

    def summary(self) -> str:
        return "; ".join(str(c) for c in self.changes) or "no changes"


class PlanInvalid(Exception):
    """The commit does not validate: nothing of it is applied."""

    def __init__(self, errors: Iterable[PlanError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors[:20]))


def read_commit(
    files: Mapping[str, bytes], problems: Mapping[str, str], tenant: str
) -> list[Document]:
    """Every document of a commit's spec files; `problems` are files that could not be read
    (too large, a link out of the path) with why. Raises PlanInvalid listing every error."""
    errors = [PlanError(name, "", why) for name, why in sorted(problems.items())]
    names = sorted(n for n in files if is_spec_file(n))
    if len(names) + len(problems) > MAX_SPEC_FILES:
        raise PlanInvalid(
            [PlanError("", "", f"{len(names)} spec files; a source holds at most {MAX_SPEC_FILES}")]
        )
    documents: list[Document] = []
    for name in names:
        found, wrong = read_file(name, files[name], tenant)
        documents += found
        errors += wrong
    seen: dict[tuple[Kind, str], str] = {}
    for d in documents:
        first = seen.setdefault((d.kind, d.name), d.file)
        if first != d.file:
            errors.append(
                PlanError(d.file, "name", f"{d.kind.value} {d.name} is defined in {first} too")
            )
    if errors:
        raise PlanInvalid(errors)
    return documents


def plan(
    source: str,
    tenant: str,
    visible: frozenset[str],
    documents: list[Document],
    existing: Existing,
    owned: Owned,
    prune: bool = True,
) -> Plan:
    """The changes that make control hold `documents` for `source` (acting as `tenant`, which
    sees the tenants in `visible`). Raises PlanInvalid listing every error."""
    errors: list[PlanError] = []
    changes: list[Change] = []
    defined = {(d.kind, d.name) for d in documents}
    for d in documents:
        owner = existing.owners.get((d.kind, d.name))
        holder = _tenant_of(existing, d.kind, d.name)
        if owner is not None and owner != source:
            errors.append(
                PlanError(d.file, "name", f"{d.kind.value} {d.name} is owned by Git source {owner}")
            )
        elif holder is not None and holder not in visible:
            errors.append(
                PlanError(d.file, "name", f"{d.kind.value} {d.name} belongs to another tenant")
            )
        elif d.kind is Kind.APPLICATION:
            digest = existing.app_versions.get((d.name, d.version))
            if digest is None:
                changes.append(
                    Change(Action.CREATE, d.kind, d.name, d.body, d.version, d.digest, d.file)
                )
            elif digest != d.digest:
                errors.append(
                    PlanError(
                        d.file,
                        "version",
                        f"application {d.name} version {d.version} exists with another spec; "
                        "versions are immutable, change the version",
                    )
                )
        else:
            records = existing.deployments if d.kind is Kind.DEPLOYMENT else existing.vaults
            present = records.get(d.name)
            if present is None:
                changes.append(Change(Action.CREATE, d.kind, d.name, d.body, file=d.file))
            elif dict(present[1]) != d.body:
                changes.append(Change(Action.UPDATE, d.kind, d.name, d.body, file=d.file))
    removed = {key for key in owned if key not in defined} if prune else set()
    for kind, name in sorted(removed, key=lambda k: (k[0].value, k[1])):
        if _tenant_of(existing, kind, name) is not None:
            changes.append(Change(Action.REMOVE, kind, name))
    errors += _references(documents, existing, visible, removed)
    if errors:
        raise PlanInvalid(errors)
    order = {Kind.VAULT: 0, Kind.APPLICATION: 1, Kind.DEPLOYMENT: 2}
    # removals last, deployments first among them (they use the applications)
    removal = Action.REMOVE
    changes.sort(
        key=lambda c: (
            c.action is removal,
            order[c.kind] * (-1 if c.action is removal else 1),
            c.name,
        )
    )
    return Plan(tuple(changes), frozenset(defined))


def _tenant_of(existing: Existing, kind: Kind, name: str) -> str | None:
    if kind is Kind.APPLICATION:
        return existing.app_tenants.get(name)
    records = existing.deployments if kind is Kind.DEPLOYMENT else existing.vaults
    present = records.get(name)
    return present[0] if present is not None else None


def _references(
    documents: list[Document],
    existing: Existing,
    visible: frozenset[str],
    removed: set[tuple[Kind, str]],
) -> list[PlanError]:
    """Deployments naming applications (and versions) that neither the commit nor control has,
    applications naming vaults nobody has, and removed applications still deployed."""
    errors: list[PlanError] = []
    gone = {name for kind, name in removed if kind is Kind.APPLICATION}
    in_commit = {d.name: d for d in documents if d.kind is Kind.APPLICATION}
    at_control = {n for n, t in existing.app_tenants.items() if t in visible and n not in gone}
    vaults = {d.name for d in documents if d.kind is Kind.VAULT} | {
        n
        for n, (t, _) in existing.vaults.items()
        if t in visible and (Kind.VAULT, n) not in removed
    }
    for d in documents:
        if d.kind is Kind.DEPLOYMENT:
            app = d.application
            if app not in in_commit and app not in at_control:
                errors.append(
                    PlanError(
                        d.file,
                        "application",
                        f"application {app!r} is neither in this commit nor at control",
                    )
                )
            elif d.version != LATEST and not (
                (app in in_commit and in_commit[app].version == d.version)
                or (app, d.version) in existing.app_versions
            ):
                errors.append(
                    PlanError(d.file, "version", f"application {app} has no version {d.version!r}")
                )
        elif d.kind is Kind.APPLICATION:
            errors += [
                PlanError(d.file, path, f"vault {vault!r} is neither in this commit nor at control")
                for path, vault in _vault_references(d.body)
                if vault not in vaults
            ]
    deployed = {d.name: d.application for d in documents if d.kind is Kind.DEPLOYMENT}
    for name, (_, body) in existing.deployments.items():
        if name not in deployed and (Kind.DEPLOYMENT, name) not in removed:
            deployed[name] = str(body.get("application", ""))
    for name, app in sorted(deployed.items()):
        if app in gone and app not in in_commit:
            errors.append(
                PlanError(
                    "", "", f"application {app} leaves the commit but deployment {name} uses it"
                )
            )
    return errors


def _vault_references(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for i, service in enumerate(document.get("services") or []):
        for part, key in (("variables", "value-from-secret"), ("volumes", "secret")):
            for j, item in enumerate(service.get(part) or []):
                ref = item.get(key) if isinstance(item, dict) else None
                if isinstance(ref, dict):
                    found.append((f"services[{i}].{part}[{j}].{key}.vault", str(ref.get("vault"))))
    return found
