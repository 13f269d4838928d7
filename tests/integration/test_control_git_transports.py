"""Git sources over the two network transports, against real servers on loopback: a private
OpenSSH server (Debian's `openssh-server`) taking a deploy key, and `git http-backend` over TLS
with a certificate from a test CA and a token. Control is a real `edge-control serve` process
driven by its CLI; nothing here reaches beyond 127.0.0.1."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from control.gitops.repo import Credentials, GitError, Repository
from tests.support.ci import missing, running
from tests.support.control import ControlProcess, api_error
from tests.support.gitremote import GitHttpServer, GitRemote, loopback_tls
from tests.support.processes import MissingPart
from tests.support.sshd import DeployKey, Sshd, deploy_key

APP = {
    "name": "web",
    "version": "1.0",
    "services": [{"name": "main", "containers": [{"name": "main", "image": "r.example/web:1"}]}],
}


@pytest.fixture
def remote(tmp_path: Path) -> GitRemote:
    remote = GitRemote(tmp_path / "origin")
    remote.write("edge/apps/web.yaml", yaml.safe_dump(APP))
    return remote


@pytest.fixture
def key(tmp_path: Path) -> DeployKey:
    try:
        return deploy_key(tmp_path / "keys")
    except MissingPart as e:
        missing(str(e))


@pytest.fixture
def sshd(tmp_path: Path, key: DeployKey) -> Iterator[Sshd]:
    with running(Sshd(tmp_path / "sshd", [key])) as server:
        yield server


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlProcess]:
    (tmp_path / "control").mkdir()
    with running(ControlProcess(tmp_path / "control")) as process:
        yield process


def git(control: ControlProcess, *args: str) -> str:
    """`edge-control git ARGS` as the operator; its output (it must succeed)."""
    connection = ("--url", control.url, "--token", control.admin_token)
    ca = ("--ca", str(control.state_dir / "ca.pem"))
    done = control.cli("git", *args, *connection, *ca)
    assert done.returncode == 0, done.stderr
    return done.stdout


def source_state(control: ControlProcess, name: str, timeout: float = 10.0) -> dict[str, Any]:
    """The source once control has fetched it (a commit seen, or a problem kept)."""
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = control.client().get(f"/v1/git-sources/{name}")
        if state["seen-commit"] or state["problem"] or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def stored(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


def key_material(key: DeployKey) -> list[bytes]:
    """The lines of the private key that are secret (its base64 body)."""
    lines = [ln.encode() for ln in key.private.splitlines() if ln and not ln.startswith("-----")]
    assert len(lines) >= 3  # an OpenSSH Ed25519 key's body
    return lines


# --- SSH with a deploy key ------------------------------------------------------------------


def test_a_source_with_a_deploy_key_is_fetched_over_ssh_and_applied(
    tmp_path: Path, remote: GitRemote, key: DeployKey, sshd: Sshd, control: ControlProcess
) -> None:
    commit = remote.commit("web 1.0")
    url = sshd.url(remote.bare)
    added = git(
        control, "add", "shop", url, "--branch", "main", "--path", "edge", "--interval", "1h",
        "--ssh-key-file", str(key.private_file),
    )  # fmt: skip
    assert "git source shop added" in added
    state = source_state(control, "shop")
    assert (state["applied-commit"], state["problem"], state["auth"]) == (commit, "", "ssh-key")
    assert control.client().get("/v1/applications/web")["versions"][0]["version"] == "1.0"
    assert "Accepted publickey for" in sshd.log.read_text()  # by the key, over the real sshd
    # the key is kept encrypted: not in the database, the Git directory or the log, in clear
    everything = stored(control.state_dir) + control.log.read_bytes()
    assert all(secret not in everything for secret in key_material(key))
    assert not list((control.state_dir / "git").glob(".key-*"))  # its file went with its call
    assert state == json.loads(git(control, "status", "shop", "-o", "json"))


def test_a_key_the_server_does_not_accept_is_one_clear_line_in_git_status(
    tmp_path: Path, remote: GitRemote, sshd: Sshd, control: ControlProcess
) -> None:
    remote.commit("web 1.0")
    wrong = deploy_key(tmp_path / "keys", "not-authorized")
    url = sshd.url(remote.bare)
    git(
        control, "add", "shop", url, "--branch", "main", "--interval", "1h",
        "--ssh-key-file", str(wrong.private_file),
    )  # fmt: skip
    state = source_state(control, "shop")
    shown = f"ssh://127.0.0.1:{sshd.port}{remote.bare}"  # the user name is not shown
    assert state["problem"] == (
        f"cannot fetch {shown}: Permission denied (publickey): "
        "the server does not accept the source's SSH key"
    )
    assert state["applied-commit"] == ""
    text = git(control, "status", "shop")
    assert f"not applied: {state['problem']}" in text
    assert all(secret.decode() not in text for secret in key_material(wrong))
    assert "Failed publickey for" in sshd.log.read_text()
    assert api_missing(control, "/v1/applications/web")


def api_missing(control: ControlProcess, path: str) -> bool:
    try:
        control.client().get(path)
    except Exception as e:  # ApiError
        return getattr(e, "status", None) == 404
    return False


def test_a_changed_host_key_is_refused_after_the_first_fetch(
    tmp_path: Path, remote: GitRemote, key: DeployKey
) -> None:
    commit = remote.commit()
    first = Sshd(tmp_path / "first", [key])
    with running(first):
        url = first.url(remote.bare)
        repo = Repository(
            tmp_path / "state" / "git" / "shop", url, Credentials(ssh_key=key.private)
        )
        assert asyncio.run(repo.fetch("main")) == commit  # its host key accepted and remembered
    impostor = Sshd(tmp_path / "impostor", [key], port=first.port)  # another host key
    with running(impostor), pytest.raises(GitError) as info:
        asyncio.run(repo.fetch("main"))
    assert str(info.value).startswith(
        f"cannot fetch ssh://127.0.0.1:{first.port}{remote.bare}: Host key verification failed: "
    )
    assert "Accepted publickey" not in impostor.log.read_text()


# --- HTTPS with a token, from a server whose certificate a private CA issued ----------------


def test_a_token_source_trusts_the_private_ca_given_with_ca_file(
    tmp_path: Path, remote: GitRemote, control: ControlProcess
) -> None:
    commit = remote.commit("web 1.0")
    ca_file, tls = loopback_tls(tmp_path / "tls")
    token_file = tmp_path / "token"
    token_file.write_text("tok-4f1c9e\n")
    with GitHttpServer(remote.bare.parent, token="tok-4f1c9e", tls=tls) as server:
        url = server.url("remote.git")
        common = ("--branch", "main", "--path", "edge", "--interval", "1h")
        git(control, "add", "shop", url, *common, "--token-file", str(token_file),
            "--ca-file", str(ca_file))  # fmt: skip
        state = source_state(control, "shop")
        assert (state["applied-commit"], state["problem"], state["auth"]) == (commit, "", "token")
        assert any(a.startswith("Basic ") for a in server.seen_authorizations)

        # the same server for a source without the CA: the system's store does not trust it
        git(control, "add", "plain", url, *common, "--token-file", str(token_file))
        refused = source_state(control, "plain")
        assert refused["problem"] == (
            f"cannot fetch {url}: the server's certificate is not trusted by the system's store "
            "(a private CA: --ca-file)"
        )
        assert refused["applied-commit"] == ""
    assert control.client().get("/v1/applications/web")["versions"][0]["version"] == "1.0"
    everything = stored(control.state_dir) + control.log.read_bytes()
    assert b"tok-4f1c9e" not in everything
    assert not list((control.state_dir / "git").glob(".ca-*"))  # its file went with its call


def test_a_ca_file_that_cannot_be_used_is_refused_and_nothing_added(
    tmp_path: Path, control: ControlProcess
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not a certificate\n")
    connection = ("--url", control.url, "--token", control.admin_token)
    ca_option = ("--ca", str(control.state_dir / "ca.pem"))
    done = control.cli(
        "git", "add", "shop", "https://git.test/r.git", "--branch", "main",
        "--ca-file", str(ca_file), *connection, *ca_option,
    )  # fmt: skip
    assert done.returncode != 0
    assert "ca: it holds no PEM certificate (-----BEGIN CERTIFICATE-----)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

    good_ca = loopback_tls(tmp_path / "tls")[0].read_text()
    for url, ca, message in [
        (
            "https://git.test/r.git",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "ca: certificate 1 is not a valid certificate",
        ),
        ("ssh://git@git.test/r.git", good_ca, "ca: a CA certificate is for an https:// URL"),
    ]:
        put = functools.partial(
            control.client().put, "/v1/git-sources/shop", {"url": url, "branch": "main", "ca": ca}
        )
        refused = api_error(put)
        assert (refused.status, message in str(refused)) == (422, True), str(refused)
    assert control.client().get("/v1/git-sources") == {"git-sources": []}
