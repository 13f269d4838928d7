"""The Git sources' part of control's store (interface): the sources, their state, what each
owns, and the one transaction that applies a commit."""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from control.gitops.source import GitSource
from control.model import AppVersion, Deployment
from control.vaults.envelope import Vault

SOURCE_COLUMNS = (
    "name, tenant, url, branch, path, poll_seconds, prune, auth, credentials, hook_hash, "
    "created, applied_commit, applied_at, seen_commit, seen_at, problem, errors"
)


@dataclass(frozen=True)
class CommitWrite:
    """What applying one commit of a Git source writes, all in one transaction."""

    source: str
    commit: str
    at: float
    apps: Sequence[AppVersion] = ()  # new versions
    apps_removed: Sequence[str] = ()  # every version of these applications
    versions_removed: Sequence[tuple[str, str]] = ()  # (application, version): the oldest
    deployments: Sequence[Deployment] = ()  # created or changed (their rollout is kept)
    deployments_removed: Sequence[str] = ()
    vaults_created: Sequence[Vault] = ()  # version 1, no secrets
    vaults_changed: Sequence[tuple[str, str, str]] = ()  # (name, distribute, unseal)
    vaults_removed: Sequence[str] = ()
    owned: Sequence[tuple[str, str]] = ()  # (kind, name): everything the source owns afterwards


def source_values(s: GitSource) -> tuple[Any, ...]:
    return (
        s.name,
        s.tenant,
        s.url,
        s.branch,
        s.path,
        s.interval,
        int(s.prune),
        s.auth,
        s.credentials,
        s.hook_hash,
        s.created,
        s.applied_commit,
        s.applied_at,
        s.seen_commit,
        s.seen_at,
        s.problem,
        json.dumps(s.errors),
    )


def source_from_row(r: Sequence[Any]) -> GitSource:
    return GitSource(
        name=r[0],
        tenant=r[1],
        url=r[2],
        branch=r[3],
        path=r[4],
        interval=float(r[5]),
        prune=bool(r[6]),
        auth=r[7],
        credentials=bytes(r[8]),
        hook_hash=r[9],
        created=r[10],
        applied_commit=r[11],
        applied_at=r[12],
        seen_commit=r[13],
        seen_at=r[14],
        problem=r[15],
        errors=json.loads(r[16]),
    )


class GitRecords(abc.ABC):
    @abc.abstractmethod
    async def create(self, source: GitSource) -> None:
        """Conflict when a source of that name exists."""

    @abc.abstractmethod
    async def load(self) -> list[GitSource]: ...
    @abc.abstractmethod
    async def delete(self, name: str) -> None:
        """NotFound when there is none; what it owned stays, owned by nobody."""

    @abc.abstractmethod
    async def save_state(self, source: GitSource) -> None:
        """The seen commit, and the problem and errors of the last try."""

    @abc.abstractmethod
    async def owners(self) -> dict[tuple[str, str], str]:
        """(kind, name) -> the source that owns it."""

    @abc.abstractmethod
    async def apply(self, write: CommitWrite) -> None: ...
