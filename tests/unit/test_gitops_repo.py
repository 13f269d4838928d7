"""Fetching and reading a Git source with Debian's `git`, against real local repositories
(file:// URLs, no network)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from control.gitops.documents import MAX_FILE_BYTES
from control.gitops.repo import OUTSIDE, Credentials, GitError, Repository
from control.gitops.source import redact
from tests.support.gitremote import GitHttpServer, GitRemote


@pytest.fixture
def remote(tmp_path: Path) -> GitRemote:
    return GitRemote(tmp_path / "origin")


def repository(tmp_path: Path, url: str, **kwargs: object) -> Repository:
    return Repository(tmp_path / "state" / "git" / "src", url, **kwargs)  # type: ignore[arg-type]


def test_a_branch_is_fetched_and_the_files_under_the_path_read(
    remote: GitRemote, tmp_path: Path
) -> None:
    remote.write("edge/apps/web.yaml", "name: web\n")
    remote.write("edge/deploy.json", "{}")
    remote.write("edge/README.md", "not a spec")
    remote.write("other/app.yaml", "name: elsewhere\n")
    first = remote.commit()
    repo = repository(tmp_path, remote.url)
    assert asyncio.run(repo.fetch("main")) == first
    tree = asyncio.run(repo.tree(first, "/edge/"))
    assert tree.files == {"apps/web.yaml": b"name: web\n", "deploy.json": b"{}"}
    assert tree.problems == {}
    remote.write("edge/apps/web.yaml", "name: web2\n")
    second = remote.commit()
    assert asyncio.run(repo.fetch("main")) == second  # fetched again into the same bare repo
    assert asyncio.run(repo.tree(second, "edge")).files["apps/web.yaml"] == b"name: web2\n"
    assert not (tmp_path / "state" / "git" / "src" / "edge").exists()  # nothing checked out


def test_a_missing_branch_is_named_with_the_url(remote: GitRemote, tmp_path: Path) -> None:
    remote.write("a.yaml", "x: 1\n")
    remote.commit()
    with pytest.raises(GitError) as info:
        asyncio.run(repository(tmp_path, remote.url).fetch("x"))
    assert str(info.value) == f"branch 'x' not found in {remote.url}"


def test_an_unreachable_url_is_one_line(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/nowhere.git"
    with pytest.raises(GitError) as info:
        asyncio.run(repository(tmp_path, url).fetch("main"))
    message = str(info.value)
    assert message.startswith(f"cannot fetch {url}: ") and "\n" not in message
    assert "does not appear to be a git repository" in message


def test_a_password_in_the_url_is_never_in_a_message() -> None:
    assert redact("https://user:s3cret@git.example/r.git") == "https://git.example/r.git"


def test_ten_thousand_files_are_listed_without_a_checkout(
    remote: GitRemote, tmp_path: Path
) -> None:
    remote.many("data", 10_000)
    remote.write("specs/app.yaml", "name: a\n")
    commit = remote.commit()
    repo = repository(tmp_path, remote.url)
    started = time.monotonic()
    asyncio.run(repo.fetch("main"))
    tree = asyncio.run(repo.tree(commit, ""))
    assert tree.files == {"specs/app.yaml": b"name: a\n"}
    listed = asyncio.run(repo._git("ls-tree", "-r", "--name-only", commit))[1].count(b"\n")
    assert listed == 10_001
    assert time.monotonic() - started < 10


def test_a_symlink_out_of_the_path_is_refused_and_one_inside_is_followed(
    remote: GitRemote, tmp_path: Path
) -> None:
    remote.write("secret.yaml", "name: not-yours\n")
    remote.write("edge/real.yaml", "name: real\n")
    remote.symlink("edge/out.yaml", "../secret.yaml")
    remote.symlink("edge/abs.yaml", "/etc/passwd.yaml")
    remote.symlink("edge/in.yaml", "real.yaml")
    commit = remote.commit()
    repo = repository(tmp_path, remote.url)
    asyncio.run(repo.fetch("main"))
    tree = asyncio.run(repo.tree(commit, "edge"))
    assert tree.problems == {"out.yaml": OUTSIDE, "abs.yaml": OUTSIDE}
    assert tree.files == {"real.yaml": b"name: real\n", "in.yaml": b"name: real\n"}


def test_a_file_over_the_limit_is_not_read(remote: GitRemote, tmp_path: Path) -> None:
    remote.write("big.yaml", b"#" * (10 * 1024 * 1024))
    commit = remote.commit()
    repo = repository(tmp_path, remote.url)
    asyncio.run(repo.fetch("main"))
    tree = asyncio.run(repo.tree(commit, ""))
    assert tree.files == {}
    assert tree.problems == {
        "big.yaml": f"the file is {10 * 1024 * 1024} bytes; at most {MAX_FILE_BYTES}"
    }


def test_a_token_reaches_git_only_through_the_calls_environment(tmp_path: Path) -> None:
    repo = repository(tmp_path, "https://git.example/r.git", credentials=Credentials(token="tkn"))
    repo.directory.parent.mkdir(parents=True)
    with repo._auth() as env:
        helper = Path(env["GIT_ASKPASS"])
        assert env["GIT_SOURCE_TOKEN"] == "tkn"
    assert "tkn" not in helper.read_text()
    assert "tkn" not in "".join(p.read_text() for p in repo.directory.parent.iterdir())


def test_an_ssh_key_lives_in_a_0600_file_only_while_its_call_runs(tmp_path: Path) -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"
    repo = repository(tmp_path, "ssh://git@git.example/r.git", credentials=Credentials(ssh_key=key))
    repo.directory.parent.mkdir(parents=True)
    with repo._auth() as env:
        command = env["GIT_SSH_COMMAND"]
        assert "StrictHostKeyChecking=accept-new" in command
        key_file = Path(command.split()[2])
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert key_file.read_text() == key + "\n"
    assert not key_file.exists()


def test_a_fetch_from_a_server_that_never_answers_ends_at_its_timeout(tmp_path: Path) -> None:
    with socket.socket() as server:  # accepts, then says nothing
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"git://127.0.0.1:{server.getsockname()[1]}/r.git"
        repo = repository(tmp_path, url, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(GitError) as info:
            asyncio.run(repo.fetch("main"))
    assert str(info.value) == f"git fetch for {url} took longer than 1s"
    assert time.monotonic() - started < 5


def test_a_token_is_answered_to_a_real_http_server_through_askpass_only(
    remote: GitRemote, tmp_path: Path
) -> None:
    remote.write("a.yaml", "name: a\n")
    commit = remote.commit()
    with GitHttpServer(remote.bare.parent, token="tok-123") as server:
        url = server.url("remote.git")
        repo = repository(tmp_path, url, credentials=Credentials(token="tok-123"))
        assert asyncio.run(repo.fetch("main")) == commit
        assert asyncio.run(repo.tree(commit, "")).files == {"a.yaml": b"name: a\n"}
        assert any(a.startswith("Basic ") for a in server.seen_authorizations)

        wrong = repository(tmp_path / "wrong", url, credentials=Credentials(token="nope"))
        with pytest.raises(GitError) as info:
            asyncio.run(wrong.fetch("main"))
        assert str(info.value).startswith(f"cannot fetch {url}: Authentication failed")
        assert "\n" not in str(info.value) and "nope" not in str(info.value)

        without = repository(tmp_path / "none", url)
        with pytest.raises(GitError) as info:
            asyncio.run(without.fetch("main"))
        assert str(info.value).startswith(f"cannot fetch {url}: ")
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
    assert b"tok-123" not in stored  # neither in the bare repository nor beside it
