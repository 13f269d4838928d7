"""A Git source as control keeps it, and the checks of what an operator gives for one (pure)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from control.gitops.documents import PlanError
from control.model import Invalid, check_name
from enforcer.shared.units import parse_duration

DEFAULT_INTERVAL = 30.0
MIN_INTERVAL = 1.0
MAX_INTERVAL = 86400.0
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,200}")
_URL = re.compile(r"(https?|ssh|git|file)://\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+")


@dataclass
class GitSource:
    name: str
    tenant: str
    url: str
    branch: str
    path: str
    interval: float
    prune: bool
    credentials: bytes  # JSON {token | ssh-key} wrapped by the master key; b"" for none
    hook_hash: str  # sha256 of the hook secret
    created: float
    auth: str = "none"  # "none", "token" or "ssh-key": what `credentials` holds
    # state: the commit applied last, the one seen last, and why that one was not applied
    applied_commit: str = ""
    applied_at: float | None = None
    seen_commit: str = ""
    seen_at: float | None = None
    problem: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)  # PlanError.to_json()

    def to_json(self) -> dict[str, Any]:
        """What an operator sees: never the credentials or the hook's secret."""
        return {
            "name": self.name,
            "tenant": self.tenant,
            "url": redact(self.url),
            "branch": self.branch,
            "path": self.path,
            "interval": self.interval,
            "prune": self.prune,
            "auth": self.auth,
            "created": self.created,
            "applied-commit": self.applied_commit,
            "applied-at": self.applied_at,
            "seen-commit": self.seen_commit,
            "seen-at": self.seen_at,
            "problem": self.problem,
            "errors": self.errors,
        }


def parse_interval(value: Any) -> float:
    """An interval given as seconds or a duration ("30s", "5m"); Invalid naming it otherwise."""
    try:
        seconds = float(value) if isinstance(value, int | float) else parse_duration(str(value))
    except ValueError:
        raise Invalid(f"interval: {value!r} is not a duration (30s, 5m)") from None
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise Invalid(f"interval: {value!r} is not between 1s and 24h")
    return seconds


def check_source(name: Any, url: Any, branch: Any, path: Any) -> tuple[str, str, str, str]:
    """The source's name, URL, branch and path checked; Invalid naming what is wrong."""
    check_name(name, "git source")
    if not isinstance(url, str) or not _URL.fullmatch(url):
        raise Invalid(
            f"url: {url!r} is not a Git URL (https://, ssh://, git://, file:// or user@host:path)"
        )
    if (
        not isinstance(branch, str)
        or not _BRANCH.fullmatch(branch)
        or ".." in branch
        or branch.startswith(("-", "/"))
        or branch.endswith(("/", ".lock"))
    ):
        raise Invalid(f"branch: {branch!r} is not a branch name")
    if not isinstance(path, str) or "\0" in path or ".." in path.split("/"):
        raise Invalid(f"path: {path!r} is not a path inside the repository")
    return name, url, branch, clean_path(path)


def errors_json(errors: list[PlanError]) -> list[dict[str, str]]:
    return [e.to_json() for e in errors]


def redact(url: str) -> str:
    """`url` without a password or token in it."""
    return re.sub(r"^([a-z+]+://)[^/@]*@", r"\1", url)


def clean_path(path: str) -> str:
    """A source's path as git names it: no leading or trailing "/", "" for the whole tree."""
    cleaned = posixpath.normpath("/" + path.strip()).strip("/")
    return "" if cleaned == "." else cleaned
