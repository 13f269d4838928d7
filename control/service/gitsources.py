"""Git sources: control follows a branch and applies the application, deployment and vault files
under a path as the source's tenant, one commit in one store transaction.

Each source is polled at its interval by the process that runs the loops that run once (on
SQLite the only one); a POST to its hook URL with its secret polls it at once. A commit that does
not validate changes nothing: the source's state names the file and path of every error. What a
source owns is refused to hand edits (`Core.refuse_owned`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509

from control.fleet.access import Principal
from control.gitops.documents import Document
from control.gitops.plan import PlanInvalid, read_commit
from control.gitops.repo import Credentials, GitError, Repository
from control.gitops.source import (
    DEFAULT_INTERVAL,
    GitSource,
    check_source,
    errors_json,
    parse_interval,
)
from control.model import Forbidden, Invalid, NotFound, Unauthorized
from control.service.core import Core
from control.service.gitapply import Applier
from control.service.vaults import Vaults
from control.vaults.envelope import CryptoError

log = logging.getLogger(__name__)

MAX_CREDENTIAL_BYTES = 64 * 1024
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n.+?\n-----END CERTIFICATE-----", re.S)
IDLE_SECONDS = 5.0  # how often a process that does not lead looks whether it leads now


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class GitSources:
    def __init__(self, core: Core, vaults: Vaults, directory: Path) -> None:
        self.core = core
        self.vaults = vaults
        self.directory = directory  # state-dir/git: one bare repository per source
        self.sources: dict[str, GitSource] = {}
        self._due: dict[str, float] = {}  # source -> when it is polled next
        self._wakeup = asyncio.Event()
        self._syncing: dict[str, asyncio.Lock] = {}  # one fetch and apply per source at a time
        self.applier = Applier(core, vaults)

    async def load(self) -> None:
        self.sources = {s.name: s for s in await self.core.store.git.load()}
        self.core.owners = dict(await self.core.store.git.owners())

    async def reload(self) -> None:
        """Another control process changed a source (or a hook asked for a poll): load the
        sources again and poll them now."""
        await self.load()
        self._due.clear()
        self._wakeup.set()

    def wake(self) -> None:
        """Poll every source now (this process has just begun to lead)."""
        self._due.clear()
        self._wakeup.set()

    # --- operators ------------------------------------------------------------------------

    async def add(
        self,
        who: Principal,
        name: Any,
        url: Any,
        branch: Any,
        path: Any,
        tenant: Any,
        interval: Any = None,
        prune: Any = True,
        token: Any = None,
        ssh_key: Any = None,
        ca: Any = None,
    ) -> tuple[GitSource, str]:
        """Add a source; (it, the hook's secret: shown this once)."""
        name, url, branch, path = check_source(name, url, branch, path)
        owner = who.tenant if tenant is None else tenant
        if not isinstance(owner, str):
            raise Invalid("tenant: a tenant name is required")
        who.require_visible(owner, f"tenant {owner!r}")
        if url.startswith("file://") and not who.is_admin:
            raise Forbidden(
                "file:// URLs (repositories on control's host) are for the system tenant"
            )
        seconds = DEFAULT_INTERVAL if interval is None else parse_interval(interval)
        if not isinstance(prune, bool):
            raise Invalid(f"prune: {prune!r} is not true or false")
        if token is not None and ssh_key is not None:
            raise Invalid("give a token (HTTPS) or an SSH key, not both")
        auth, secret_value = "none", ""
        for kind, value in (("token", token), ("ssh-key", ssh_key)):
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip() or "\0" in value:
                raise Invalid(f"{kind}: it is empty or not text")
            if len(value.encode()) > MAX_CREDENTIAL_BYTES:
                raise Invalid(f"{kind}: more than {MAX_CREDENTIAL_BYTES} bytes")
            auth, secret_value = kind, value.strip()
        if auth == "token" and not url.startswith("https://"):
            raise Invalid("token: a token is for an https:// URL")
        if auth == "ssh-key" and url.startswith(("https://", "http://", "file://", "git://")):
            raise Invalid("ssh-key: an SSH key is for an ssh:// or user@host:path URL")
        kept = {auth: secret_value} if auth != "none" else {}
        if ca is not None:
            kept["ca"] = _check_ca(ca, url)
        credentials = b""
        if kept:  # the CA is not secret, but kept with the credentials it goes with
            raw = json.dumps(kept).encode()
            credentials = await asyncio.to_thread(self.vaults.envelope.wrap, raw, f"git|{name}")
        hook_secret = "ewh_" + secrets.token_urlsafe(24)
        source = GitSource(
            name=name,
            tenant=owner,
            url=url,
            branch=branch,
            path=path,
            interval=seconds,
            prune=prune,
            credentials=credentials,
            hook_hash=_hash(hook_secret),
            created=self.core.clock(),
            auth=auth,
        )
        await self.core.store.git.create(source)
        self.sources[name] = source
        self._due.pop(name, None)
        self._wakeup.set()
        log.info("git source %s added for tenant %s (%s)", name, owner, source.to_json()["url"])
        return source, hook_secret

    def get(self, who: Principal, name: str) -> GitSource:
        source = self.sources.get(name)
        if source is None or source.tenant not in who.visible:
            raise NotFound(f"git source {name} does not exist")
        return source

    def visible(self, who: Principal) -> list[GitSource]:
        return [s for _, s in sorted(self.sources.items()) if s.tenant in who.visible]

    async def remove(self, who: Principal, name: str) -> None:
        """Forget a source: what it applied stays, and may be changed by hand again."""
        self.get(who, name)
        async with self.core.lock:
            await self.core.store.git.delete(name)
            self.sources.pop(name, None)
            self.core.owners = {k: s for k, s in self.core.owners.items() if s != name}
        async with self._syncing.setdefault(name, asyncio.Lock()):  # none is fetching into it
            await asyncio.to_thread(shutil.rmtree, self.directory / name, True)
        log.info("git source %s removed (what it applied stays)", name)

    async def hook(self, name: str, secret: str | None) -> None:
        """A push was announced: poll the source now. 404 for no such source, 401 for a
        wrong secret (compared in constant time)."""
        source = self.sources.get(name)
        if source is None:
            raise NotFound(f"git source {name} does not exist")
        if not secret or not hmac.compare_digest(_hash(secret), source.hook_hash):
            raise Unauthorized(f"git source {name}: the hook secret is not valid")
        if self.core.leads():
            self._due.pop(name, None)
            self._wakeup.set()
        else:  # the process that leads polls it when it hears of the change
            await self.core.store.git.save_state(source)

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll every source at its interval (only while this process leads)."""
        while True:
            timeout = IDLE_SECONDS
            if self.core.leads():
                now = self.core.clock()
                for name in list(self.sources):
                    if self._due.get(name, 0.0) <= now:
                        try:
                            await self.sync(name)
                        except Exception:
                            log.exception("git source %s: polling failed; trying again", name)
                        source = self.sources.get(name)
                        if source is not None:
                            self._due[name] = self.core.clock() + source.interval
                if self._due:
                    timeout = max(0.05, min(self._due.values()) - self.core.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), min(timeout, IDLE_SECONDS))
            self._wakeup.clear()

    async def sync(self, name: str) -> GitSource:
        """Fetch the source's branch and apply its commit unless it is applied already."""
        async with self._syncing.setdefault(name, asyncio.Lock()):
            return await self._sync(name)

    async def _sync(self, name: str) -> GitSource:
        source = self.sources.get(name)
        if source is None:
            raise NotFound(f"git source {name} does not exist")
        repo = Repository(self.directory / name, source.url, self._credentials(source))
        now = self.core.clock()
        try:
            commit = await repo.fetch(source.branch)
        except GitError as e:
            return await self._failed(source, source.seen_commit, str(e), [])
        if commit == source.applied_commit:
            if source.problem or source.seen_commit != commit:
                return await self._failed(source, commit, "", [])
            return source
        try:
            tree = await repo.tree(commit, source.path)
            documents = read_commit(dict(tree.files), dict(tree.problems), source.tenant)
        except GitError as e:
            return await self._failed(source, commit, str(e), [])
        except PlanInvalid as e:
            return await self._failed(source, commit, _why(e), errors_json(e.errors))
        try:
            return await self._apply(source, commit, documents, now)
        except PlanInvalid as e:
            return await self._failed(source, commit, _why(e), errors_json(e.errors))

    async def _failed(
        self, source: GitSource, commit: str, problem: str, errors: list[dict[str, str]]
    ) -> GitSource:
        """Keep why `commit` was not applied (only when that changed)."""
        if (source.seen_commit, source.problem, source.errors) == (commit, problem, errors):
            return source
        if problem:
            log.warning(
                "git source %s: commit %s not applied: %s", source.name, commit[:12], problem
            )
        updated = replace(
            source, seen_commit=commit, seen_at=self.core.clock(), problem=problem, errors=errors
        )
        await self.core.store.git.save_state(updated)
        if source.name in self.sources:  # not removed meanwhile
            self.sources[source.name] = updated
        return updated

    def _credentials(self, source: GitSource) -> Credentials:
        if not source.credentials:
            return Credentials()
        try:
            raw = self.vaults.envelope.unwrap(source.credentials, f"git|{source.name}")
        except CryptoError:
            log.error("git source %s: its credentials do not open with the master key", source.name)
            return Credentials()
        values = json.loads(raw)
        return Credentials(
            token=values.get("token", ""),
            ssh_key=values.get("ssh-key", ""),
            ca=values.get("ca", ""),
        )

    async def _apply(
        self, source: GitSource, commit: str, documents: list[Document], now: float
    ) -> GitSource:
        result = await self.applier.apply(source, commit, documents, now)
        updated = replace(
            source,
            applied_commit=commit,
            applied_at=now,
            seen_commit=commit,
            seen_at=now,
            problem="",
            errors=[],
        )
        if source.name in self.sources:  # not removed meanwhile
            self.sources[source.name] = updated
        log.info("git source %s: applied %s (%s)", source.name, commit[:12], result.summary())
        return updated


def _check_ca(ca: Any, url: str) -> str:
    """A source's own CA certificates (PEM), trusted instead of the system's store for it."""
    if not url.startswith("https://"):
        raise Invalid("ca: a CA certificate is for an https:// URL")
    if not isinstance(ca, str) or len(ca.encode()) > MAX_CREDENTIAL_BYTES:
        raise Invalid(f"ca: PEM certificates of at most {MAX_CREDENTIAL_BYTES} bytes are needed")
    blocks = _PEM.findall(ca)
    if not blocks:
        raise Invalid("ca: it holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    for number, block in enumerate(blocks, 1):
        try:
            x509.load_pem_x509_certificate(block.encode())
        except ValueError:
            raise Invalid(f"ca: certificate {number} is not a valid certificate") from None
    return "\n".join(blocks)


def _why(error: PlanInvalid) -> str:
    count = len(error.errors)
    first = str(error.errors[0]) if error.errors else "the commit does not validate"
    more = f" (and {count - 1} more)" if count > 1 else ""
    return f"the commit does not validate: {first}{more}"
