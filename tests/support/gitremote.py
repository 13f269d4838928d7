"""A Git repository of a test's own: a bare repository (what control fetches, by a file:// URL,
no network) and a work clone that commits to it, with Debian's `git`."""

from __future__ import annotations

import base64
import http.server
import os
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from enforcer.shared.pki import (
    cert_to_pem,
    create_ca,
    generate_key,
    issue_leaf,
    write_key_and_cert,
)
from tests.support.ci import missing

_ENV = {
    "GIT_AUTHOR_NAME": "Edgeward Tests",
    "GIT_AUTHOR_EMAIL": "tests@edgeward.invalid",
    "GIT_COMMITTER_NAME": "Edgeward Tests",
    "GIT_COMMITTER_EMAIL": "tests@edgeward.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


class GitRemote:
    def __init__(self, directory: Path, branch: str = "main") -> None:
        if shutil.which("git") is None:
            missing("git is not installed (Debian package git)")
        self.bare = directory / "remote.git"
        self.work = directory / "work"
        self.branch = branch
        self._git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(self.bare))
        self._git("init", "--quiet", f"--initial-branch={branch}", str(self.work))

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def _git(self, *args: str, input_text: str | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **_ENV},
            cwd=self.work if self.work.exists() else None,
        )
        if done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def write(self, name: str, content: str | bytes) -> None:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)

    def symlink(self, name: str, target: str) -> None:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)

    def many(self, directory: str, count: int) -> None:
        """`count` small files under `directory` in the next commit (into git's index only,
        not the work tree: quick for thousands of files)."""
        blob = self._git("hash-object", "-w", "--stdin", input_text="x\n")
        entries = "".join(f"100644 {blob}\t{directory}/{i // 100}/{i}.txt\n" for i in range(count))
        self._git("update-index", "--add", "--index-info", input_text=entries)

    def remove(self, name: str) -> None:
        self._git("rm", "--quiet", name)

    def commit(self, message: str = "change") -> str:
        """Commit everything in the work tree and push it; the new commit's id."""
        self._git("add", "--ignore-removal", ".")  # entries of `many` stay
        self._git("commit", "--quiet", "--allow-empty", "-m", message)
        self._git("push", "--quiet", str(self.bare), f"HEAD:refs/heads/{self.branch}")
        return self._git("rev-parse", "HEAD")


def loopback_tls(
    directory: Path, name: str = "Edgeward Tests Git CA"
) -> tuple[Path, ssl.SSLContext]:
    """A private test CA (`directory`/ca.pem, the file an operator would give control) and a
    server context whose certificate it issued for 127.0.0.1; no system store trusts it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = create_ca(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), 1)
    key = generate_key()
    leaf = issue_leaf(
        ca,
        ca_key,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "git.test")]),
        key.public_key(),
        1,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        hosts=["127.0.0.1"],
    )
    write_key_and_cert(directory / "server-key.pem", key, directory / "server.pem", leaf)
    (directory / "ca.pem").write_bytes(cert_to_pem(ca))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server-key.pem")
    return directory / "ca.pem", context


class GitHttpServer:
    """Git's smart HTTP (`git http-backend`) on 127.0.0.1, asking for HTTP Basic credentials:
    a user name and `token` as the password (as Git hosting services take access tokens).
    With `tls` (see `loopback_tls`) it answers HTTPS only."""

    def __init__(self, project_root: Path, token: str, tls: ssl.SSLContext | None = None) -> None:
        self.project_root = project_root
        self.token = token
        self.tls = tls
        self.seen_authorizations: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._backend()

            def do_POST(self) -> None:
                self._backend()

            def _backend(self) -> None:
                given = self.headers.get("Authorization", "")
                server.seen_authorizations.append(given)
                user_pass = ""
                if given.startswith("Basic "):
                    user_pass = base64.b64decode(given[6:]).decode(errors="replace")
                if user_pass.partition(":")[2] != server.token:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(server.project_root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_CONFIG_GLOBAL": os.devnull,
                }
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                if self.headers.get("Git-Protocol"):
                    env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
                done = subprocess.run(
                    ["git", "http-backend"], input=body, capture_output=True, env=env, check=False
                )
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                status = 200
                headers: list[tuple[str, str]] = []
                for line in head.decode(errors="replace").split("\r\n"):
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:  # a client refusing the certificate fails in accept: dropped
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self) -> GitHttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
