"""The one module that runs Debian's `git`: fetch a source's branch into a bare repository of
control's own (state-dir/git/NAME) and read the spec files under its path at a commit.

`git` runs as a process with an argument list (never a shell), a timeout per call, no
terminal prompt and no user or system configuration. Files are listed with ``ls-tree`` and read
with ``cat-file --batch`` (nothing is checked out), so a repository of many thousands of files
costs two processes. Credentials never reach a file in the clear or the command line: a token
is answered by an askpass helper from the environment of that one call, an SSH deploy key (and a
source's own CA certificates for HTTPS) lives in a 0600 file only while its call runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from control.gitops.documents import MAX_FILE_BYTES, MAX_SPEC_FILES, is_spec_file
from control.gitops.source import clean_path, redact

GIT = "git"
DEFAULT_TIMEOUT = 60.0
_SHA = re.compile(r"[0-9a-f]{40}")
_ASKPASS = """#!/bin/sh
# Edgeward's answer to git's credential prompts: the token of the one call that runs (from its
# environment; this file holds none)
case "$1" in
  Username*) printf '%s\\n' "${GIT_SOURCE_USERNAME:-x-access-token}" ;;
  *) printf '%s\\n' "$GIT_SOURCE_TOKEN" ;;
esac
"""
OUTSIDE = "a symbolic link pointing outside the source's path"
_DENIED = "Permission denied (publickey"  # ssh: "Permission denied (publickey,password)."
_SSH_REFUSALS = {
    _DENIED: "the server does not accept the source's SSH key",
    "Host key verification failed": "the server's host key is not the one in "
    "STATE_DIR/git/known_hosts (remove its line there if the server's key was changed)",
}


class GitError(Exception):
    """A fetch or read that failed; the message is one line naming the source's URL."""


@dataclass(frozen=True)
class Credentials:
    token: str = ""  # HTTPS
    ssh_key: str = ""  # an SSH deploy key (OpenSSH private key text)
    ca: str = ""  # HTTPS: the PEM certificates to trust instead of the system's store


@dataclass(frozen=True)
class Tree:
    """The spec files under a path at a commit (names relative to the path), and the files
    that could not be read, with why."""

    files: Mapping[str, bytes]
    problems: Mapping[str, str]


class Repository:
    """A source's bare repository under `directory`, fetched from `url`."""

    def __init__(
        self,
        directory: Path,
        url: str,
        credentials: Credentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.directory = directory
        self.url = url
        self.credentials = credentials or Credentials()
        self.timeout = timeout

    # --- fetching ---------------------------------------------------------------------------

    async def fetch(self, branch: str) -> str:
        """Fetch `branch` and return its commit; GitError (one line) when it cannot be."""
        if not (self.directory / "HEAD").exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            await self._git("init", "--quiet", "--bare", str(self.directory), cwd=False)
        ref = f"refs/edgeward/{branch}"
        with self._auth() as env:
            code, _, err = await self._run(
                [
                    f"--git-dir={self.directory}",
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--force",
                    "--depth=1",
                    "--",
                    self.url,
                    f"+refs/heads/{branch}:{ref}",
                ],
                env,
            )
        if code != 0:
            raise GitError(self._fetch_problem(branch, err))
        _, out, _ = await self._git("rev-parse", "--verify", f"{ref}^{{commit}}")
        return out.decode().strip()

    def _fetch_problem(self, branch: str, err: bytes) -> str:
        text = err.decode(errors="replace")
        url = redact(self.url)
        if "couldn't find remote ref" in text:
            return f"branch {branch!r} not found in {url}"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        for line in lines:  # ssh's own reason, before git's "Could not read from remote"
            for said, meaning in _SSH_REFUSALS.items():
                if said in line:
                    if said == _DENIED and not self.credentials.ssh_key:
                        meaning = "the server asks for an SSH key (--ssh-key-file)"
                    return f"cannot fetch {url}: {line[line.index(said) :].rstrip('.')}: {meaning}"
        if "certificate verification failed" in text:
            trust = "the source's --ca-file" if self.credentials.ca else "the system's store"
            hint = "" if self.credentials.ca else " (a private CA: --ca-file)"
            return f"cannot fetch {url}: the server's certificate is not trusted by {trust}{hint}"
        fatal = [ln for ln in lines if ln.startswith("fatal:")]
        last = (fatal or lines[-1:] or ["git fetch failed"])[0]
        last = last.removeprefix("fatal: ").replace(self.url, url)
        return f"cannot fetch {url}: {last}"

    @contextlib.contextmanager
    def _auth(self) -> Iterator[dict[str, str]]:
        """The environment of one network call: askpass for a token, a 0600 key file for SSH,
        a file of the CA certificates to trust for HTTPS (files removed when the call is done)."""
        env: dict[str, str] = {}
        if self.credentials.token:
            helper = self.directory.parent / "askpass.sh"
            if not helper.exists():
                helper.write_text(_ASKPASS)
                helper.chmod(0o700)
            env["GIT_ASKPASS"] = str(helper)
            env["GIT_SOURCE_TOKEN"] = self.credentials.token
        with contextlib.ExitStack() as files:
            if self.credentials.ca:  # trusted instead of the system's store, for this source
                env["GIT_SSL_CAINFO"] = files.enter_context(
                    self._call_file(".ca-", self.credentials.ca)
                )
            if self.credentials.ssh_key:
                name = files.enter_context(self._call_file(".key-", self.credentials.ssh_key))
                known = self.directory.parent / "known_hosts"
                env["GIT_SSH_COMMAND"] = (
                    f"ssh -i {name} -o IdentitiesOnly=yes -o BatchMode=yes "
                    f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known}"
                )
            yield env

    @contextlib.contextmanager
    def _call_file(self, prefix: str, text: str) -> Iterator[str]:
        """`text` in a 0600 file beside the source's repository while one call runs."""
        fd, name = tempfile.mkstemp(prefix=prefix, dir=self.directory.parent)
        try:
            with os.fdopen(fd, "w") as f:  # mkstemp makes it 0600
                f.write(text.strip() + "\n")
            yield name
        finally:
            os.unlink(name)

    # --- reading ----------------------------------------------------------------------------

    async def tree(self, commit: str, path: str) -> Tree:
        """The spec files under `path` at `commit`: listed, never checked out; a file over
        the size limit or a link leaving the path is a problem, not read."""
        if not _SHA.fullmatch(commit):
            raise GitError(f"{commit!r} is not a commit id")
        root = clean_path(path)
        args = ["ls-tree", "-r", "-l", "-z", "--full-tree", commit]
        _, out, _ = await self._git(*args, *([f"{root}/"] if root else []))
        blobs: dict[str, tuple[str, str, int]] = {}  # full path -> (mode, sha, size)
        for entry in out.split(b"\0"):
            if not entry:
                continue
            meta, _, name = entry.decode(errors="surrogateescape").partition("\t")
            mode, kind, sha, length = meta.split()
            if kind == "blob":
                blobs[name] = (mode, sha, int(length))
        prefix = f"{root}/" if root else ""
        wanted = {n[len(prefix) :]: n for n in blobs if is_spec_file(n[len(prefix) :])}
        if len(wanted) > MAX_SPEC_FILES:
            too_many = f"{len(wanted)} spec files; a source holds at most {MAX_SPEC_FILES}"
            return Tree({}, {"": too_many})
        problems: dict[str, str] = {}
        links = {r: blobs[n][1] for r, n in wanted.items() if blobs[n][0] == "120000"}
        targets = await self._read(list(links.values())) if links else {}
        read: dict[str, str] = {}  # relative name -> sha of the content to read
        for rel, full in wanted.items():
            mode, sha, size = blobs[full]
            if mode == "120000":
                target = targets[sha].decode(errors="replace")
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(full), target))
                inside = (
                    not target.startswith("/")
                    and resolved != ".."
                    and not resolved.startswith("../")
                    and resolved.startswith(prefix)
                )
                if not inside:
                    problems[rel] = OUTSIDE
                    continue
                if resolved not in blobs or blobs[resolved][0] == "120000":
                    problems[rel] = f"a symbolic link to {target!r}, which is no file here"
                    continue
                mode, sha, size = blobs[resolved]
            if size > MAX_FILE_BYTES:
                problems[rel] = f"the file is {size} bytes; at most {MAX_FILE_BYTES}"
            else:
                read[rel] = sha
        contents = await self._read(sorted(set(read.values())))
        return Tree({rel: contents[sha] for rel, sha in read.items()}, problems)

    async def _read(self, shas: list[str]) -> dict[str, bytes]:
        """Blobs by id, in one ``cat-file --batch``."""
        if not shas:
            return {}
        _, out, _ = await self._git("cat-file", "--batch", stdin="".join(s + "\n" for s in shas))
        blobs: dict[str, bytes] = {}
        at = 0
        for sha in shas:
            end = out.index(b"\n", at)
            header = out[at:end].split()
            if len(header) != 3 or header[0].decode() != sha:
                raise GitError(f"reading {sha} from {redact(self.url)}: {out[at:end]!r}")
            size = int(header[2])
            blobs[sha] = out[end + 1 : end + 1 + size]
            at = end + 1 + size + 1
        return blobs

    # --- running git ------------------------------------------------------------------------

    async def _git(
        self, *args: str, stdin: str | None = None, cwd: bool = True
    ) -> tuple[int, bytes, bytes]:
        """Run a local git command; GitError unless it succeeds."""
        argv = [f"--git-dir={self.directory}", *args] if cwd else list(args)
        code, out, err = await self._run(argv, {}, stdin)
        if code != 0:
            last = (err.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
            raise GitError(f"git {args[0]} for {redact(self.url)}: {last}")
        return code, out, err

    async def _run(
        self, args: list[str], extra_env: Mapping[str, str], stdin: str | None = None
    ) -> tuple[int, bytes, bytes]:
        git = shutil.which(GIT)
        if git is None:
            raise GitError("git is not installed (Debian package git)")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.directory.parent),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "LC_ALL": "C",
            **extra_env,
        }
        process = await asyncio.create_subprocess_exec(
            git,
            *args,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its helpers (ssh, askpass) go with it on a timeout
        )
        try:
            out, err = await asyncio.wait_for(
                process.communicate(stdin.encode() if stdin is not None else None), self.timeout
            )
        except TimeoutError:
            _kill_group(process.pid)
            await process.wait()
            what = next(a for a in args if not a.startswith("--"))
            raise GitError(
                f"git {what} for {redact(self.url)} took longer than {self.timeout:g}s"
            ) from None
        except BaseException:
            if process.returncode is None:
                _kill_group(process.pid)
                await process.wait()
            raise
        assert process.returncode is not None
        return process.returncode, out, err


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
