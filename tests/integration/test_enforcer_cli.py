"""`edge-enforcer`'s site-local commands as a real process against a real daemon on our engine:
connection options before or after the command, and one clear line when it cannot answer."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.config.load import load_config
from tests.support.enforcer import EnforcerProc, enforcer_command
from tests.support.engines import DockerEngine
from tests.support.processes import free_port


@pytest.fixture()
def tcp_enforcer(engine: DockerEngine) -> Iterator[tuple[EnforcerProc, str, str]]:
    """A real daemon that also listens on loopback TCP: it, its URL and its API token."""
    root = Path(tempfile.mkdtemp(prefix="enf-", dir="/tmp"))
    proc = EnforcerProc(root, engine.url)
    proc.write_config()
    port = free_port()
    text = proc.config_path.read_text()
    proc.config_path.write_text(text.replace("[api]\n", f'[api]\nlisten = "127.0.0.1:{port}"\n'))
    proc.start()
    token = load_config(proc.config_path).api.token_file.read_text().strip()
    yield proc, f"http://127.0.0.1:{port}", token
    proc.stop()
    proc.remove_firewall()
    shutil.rmtree(root, ignore_errors=True)


def edge_enforcer(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWARD_")}
    full_env.update(env or {})
    return subprocess.run(
        [*enforcer_command(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("edge-enforcer: error: ")
    return result.stderr.rstrip("\n")


def test_url_and_token_reach_the_daemon_before_or_after_the_command_or_from_the_environment(
    tcp_enforcer: tuple[EnforcerProc, str, str],
) -> None:
    _, url, token = tcp_enforcer
    for args, env in [
        (("--url", url, "--token", token, "status", "--check"), None),
        (("status", "--check", "--url", url, "--token", token), None),
        (("status", "--check"), {"EDGEWARD_URL": url, "EDGEWARD_TOKEN": token}),
        (("--token", token, "status", "--check"), {"EDGEWARD_URL": url, "EDGEWARD_TOKEN": "no"}),
    ]:
        result = edge_enforcer(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert "site:" in result.stdout


def test_a_wrong_token_is_one_line_and_exit_1(tcp_enforcer: tuple[EnforcerProc, str, str]) -> None:
    _, url, token = tcp_enforcer
    line = one_error_line(edge_enforcer("--url", url, "--token", token, "ps", "--token", "wrong"))
    assert line == "edge-enforcer: error: wrong bearer token"


def test_a_stopped_daemon_is_one_line_naming_the_socket_and_exit_1(
    tcp_enforcer: tuple[EnforcerProc, str, str],
) -> None:
    proc, url, token = tcp_enforcer
    assert edge_enforcer("--config", str(proc.config_path), "status", "--check").returncode == 0
    proc.stop()
    line = one_error_line(edge_enforcer("--config", str(proc.config_path), "ps"))
    assert line in (
        f"edge-enforcer: error: cannot reach the enforcer at {proc.socket}: "
        "no such file (is edge-enforcer running?)",
        f"edge-enforcer: error: cannot reach the enforcer at {proc.socket}: "
        "connection refused (is edge-enforcer running?)",
    )
    line = one_error_line(edge_enforcer("ps", "--url", url, "--token", token))
    assert line == (
        f"edge-enforcer: error: cannot reach the enforcer at {url}: "
        "connection refused (is edge-enforcer running?)"
    )


def test_following_events_ends_with_one_line_when_the_daemon_stops(
    tcp_enforcer: tuple[EnforcerProc, str, str],
) -> None:
    proc = tcp_enforcer[0]
    follower = subprocess.Popen(
        [*enforcer_command(), "--config", str(proc.config_path), "events", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(1.5)  # it is following
        assert follower.poll() is None
        proc.stop()
        out, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert "enforcer.started" in out  # it followed
    assert (follower.returncode, err) == (
        1,
        f"edge-enforcer: error: the enforcer at {proc.socket} ended the events (is it stopping?)\n",
    )
