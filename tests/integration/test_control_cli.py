"""`edge-control` as an operator runs it: a real process against a real `edge-control serve`."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from enforcer.shared.sealing import unseal
from tests.support.control import ControlProcess, Site, run
from tests.support.processes import free_port

PIPED_VALUE = "piped-7Hq2-unique-value\nwith a second line ✓\n"
FILE_VALUE = "-----BEGIN KEY-----\nfile-9Zp4-unique-value\n-----END KEY-----\n"
TYPED_VALUE = "typed-3Kd8-unique-value"


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "control.cli.main", *args]


def environment(env: dict[str, str] | None = None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWARD_")}
    full_env.update(env or {})
    return full_env


def edge_control(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """`edge-control ARGS` exactly as given, with only `env` of the EDGEWARD_ variables."""
    result = subprocess.run(
        command(*args),
        capture_output=True,
        env=environment(env),
        input=stdin,
        timeout=60,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def tenants(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [t["name"] for t in json.loads(result.stdout)]


def test_url_token_and_ca_go_before_or_after_the_command(
    control: ControlProcess, tmp_path: Path
) -> None:
    away = ("--state-dir", str(tmp_path / "elsewhere"))  # no local control to fall back on
    conn = (
        "--url",
        control.url,
        "--token",
        control.admin_token,
        "--ca",
        str(control.state_dir / "ca.pem"),
    )
    assert tenants(edge_control(*away, *conn, "tenant", "ls", "-o", "json")) == ["system"]
    assert tenants(edge_control(*away, "tenant", "ls", *conn, "-o", "json")) == ["system"]
    assert tenants(edge_control(*away, "--url", control.url, "tenant", "ls", "-o", "json",
                                "--token", control.admin_token, "--ca", str(control.state_dir / "ca.pem"))) == [
        "system"
    ]  # fmt: skip
    result = edge_control(*away, "vault", "ls", *conn, "-o", "json")  # a group of its own module
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_an_option_after_the_command_wins_over_the_one_before_it_and_the_environment(
    control: ControlProcess,
) -> None:
    env = control.cli_env(token="ewt_wrong")
    right = control.admin_token
    assert tenants(
        edge_control("tenant", "ls", "-o", "json", env={**env, "EDGEWARD_TOKEN": right})
    ) == ["system"]
    assert tenants(edge_control("--token", right, "tenant", "ls", "-o", "json", env=env)) == [
        "system"
    ]
    assert tenants(edge_control("tenant", "ls", "-o", "json", "--token", right, env=env)) == [
        "system"
    ]
    assert tenants(
        edge_control(
            "--token", "ewt_wrong", "tenant", "ls", "-o", "json", "--token", right, env=env
        )
    ) == ["system"]
    refused = edge_control("--token", right, "tenant", "ls", "--token", "ewt_wrong", env=env)
    assert (refused.returncode, refused.stderr) == (1, "edge-control: the token is not valid\n")
    refused = edge_control("tenant", "ls", env=env)
    assert (refused.returncode, refused.stderr) == (1, "edge-control: the token is not valid\n")


def test_config_goes_before_or_after_the_command(control: ControlProcess) -> None:
    state = ("--state-dir", str(control.state_dir))  # the local control: its URL, token and CA
    config = ("--config", str(control.config))
    env = {"EDGEWARD_CONFIG": "/nonexistent/control.toml"}
    assert tenants(edge_control(*state, *config, "tenant", "ls", "-o", "json", env=env)) == [
        "system"
    ]
    assert tenants(edge_control(*state, "tenant", "ls", "-o", "json", *config, env=env)) == [
        "system"
    ]
    missing = edge_control(*state, "tenant", "ls", env=env)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "/nonexistent/control.toml" in missing.stderr


# --- secret put: values from a file or standard input, never in a process list ------------


def local(control: ControlProcess) -> tuple[str, ...]:
    return ("--config", str(control.config), "--state-dir", str(control.state_dir))


async def site_opening_vaults(control: ControlProcess) -> tuple[Site, dict[str, Any]]:
    """An enrolled site with customer=acme whose vaults, opened with its key, land in the dict."""
    opened: dict[str, Any] = {}
    site = await Site.enroll(control, "store-1", {"customer": "acme"})

    async def on_vaults(vaults: list[dict[str, Any]]) -> None:
        key = serialization.load_pem_private_key(site.identity.key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        opened.clear()
        opened.update({v["name"]: unseal(v["sealed"], key, site="store-1") for v in vaults})

    site.options["on_vaults"] = on_vaults
    site.start()
    created = edge_control(
        *local(control), "vault", "create", "vision", "--distribute", "customer = acme"
    )
    assert created.returncode == 0, created.stderr
    return site, opened


def command_lines() -> list[str]:
    lines = []
    for process in psutil.process_iter():
        try:
            lines.append(" ".join(process.cmdline()))
        except psutil.Error:
            continue  # gone, or not ours to read
    return lines


def test_secret_values_come_from_a_pipe_and_a_file_and_never_appear_in_a_command_line(
    control: ControlProcess, tmp_path: Path
) -> None:
    value_file = tmp_path / "key.pem"
    value_file.write_text(FILE_VALUE)

    async def scenario() -> None:
        site, opened = await site_opening_vaults(control)
        args = (
            "secret",
            "put",
            "vision",
            "creds",
            "api-key=-",
            f"tls-key=@{value_file}",
            "user=bot",
        )
        cli = subprocess.Popen(
            command(*local(control), *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment(),
        )
        try:
            await asyncio.sleep(0.5)  # it has started and waits for standard input
            lines = command_lines()
            assert any("api-key=-" in line for line in lines)  # the scan sees the CLI
            assert not [line for line in lines if "7Hq2" in line or "9Zp4" in line]
            out, err = await asyncio.to_thread(cli.communicate, PIPED_VALUE.encode(), 60)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert cli.returncode == 0, err
        assert (
            out.decode()
            == "secret vision/creds set: keys api-key, tls-key, user (vault version 2)\n"
        )
        assert b"7Hq2" not in out + err and b"9Zp4" not in out + err
        await site.wait_for(lambda: "creds" in opened.get("vision", {}))
        assert opened["vision"]["creds"] == {
            "api-key": PIPED_VALUE,  # the bytes as piped: nothing stripped
            "tls-key": FILE_VALUE,
            "user": "bot",
        }
        await site.stop()

    run(scenario())


def test_a_value_typed_on_a_terminal_is_not_echoed(control: ControlProcess) -> None:
    async def scenario() -> None:
        site, opened = await site_opening_vaults(control)
        argv = command(*local(control), "secret", "put", "vision", "creds", "api-key=-")
        env = environment()
        pid, terminal = pty.fork()
        if pid == 0:  # the child, on the new terminal
            os.execve(sys.executable, argv, env)
        screen = await asyncio.to_thread(
            type_on_terminal, terminal, "value of api-key: ", TYPED_VALUE
        )
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, screen
        assert "value of api-key: " in screen and "secret vision/creds set" in screen
        assert TYPED_VALUE not in screen  # not echoed
        await site.wait_for(lambda: "creds" in opened.get("vision", {}))
        assert opened["vision"]["creds"] == {"api-key": TYPED_VALUE}
        await site.stop()

    run(scenario())


def type_on_terminal(terminal: int, prompt: str, text: str) -> str:
    """Waits for `prompt` on the terminal, types `text` and Enter, and returns all it showed."""
    screen = b""
    deadline = time.monotonic() + 30
    typed = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
        if not typed and prompt.encode() in screen:
            os.write(terminal, text.encode() + b"\n")
            typed = True
    os.close(terminal)
    return screen.decode(errors="replace")


def test_bad_secret_values_name_the_key_and_the_problem(
    control: ControlProcess, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    cases = [
        (
            (f"tls-key=@{missing}",),
            b"",
            f"key tls-key: cannot read {missing}: no such file or directory",
        ),
        ((f"tls-key=@{empty}",), b"", "key tls-key: the value is empty"),
        (("api-key=-",), b"", "key api-key: the value is empty"),
        (("api-key=",), b"", "key api-key: the value is empty"),
        (
            ("api-key=-",),
            b"\xff\xfe",
            "key api-key: standard input is not UTF-8 text (secret values are text)",
        ),
        (
            ("a=-", "b=-"),
            b"x",
            "keys a, b all read standard input: give one of them as key=- and the others as key=@file",
        ),
        (("user=bot", "user=other"), b"", "key user: given twice"),
        (("=s3cret-value",), b"", "value 1 is not key=value, key=@file or key=- (standard input)"),
    ]
    for pairs, stdin, message in cases:
        result = edge_control(
            *local(control), "secret", "put", "vision", "creds", *pairs, stdin=stdin
        )
        assert (result.returncode, result.stderr) == (1, f"edge-control: {message}\n"), pairs
        assert "s3cret" not in result.stderr


# --- one clear line when control cannot answer ----------------------------------------------


def test_unreachable_control_a_wrong_ca_and_a_wrong_token_are_one_line_and_exit_1(
    control: ControlProcess, tmp_path: Path
) -> None:
    away = ("--state-dir", str(tmp_path / "elsewhere"))
    ca = str(control.state_dir / "ca.pem")
    nobody = f"https://127.0.0.1:{free_port()}"
    refused = edge_control(*away, "site", "ls", "--url", nobody, "--token", "t", "--ca", ca)
    assert (refused.returncode, refused.stderr) == (
        1,
        f"edge-control: cannot reach control at {nobody}: connection refused\n",
    )
    unverified = edge_control(*away, "site", "ls", "--url", control.url, "--token", "t")
    assert unverified.returncode == 1
    assert unverified.stderr.startswith(f"edge-control: cannot verify control at {control.url}: ")
    assert unverified.stderr.endswith(" (is --ca control's ca.pem?)\n")
    assert unverified.stderr.count("\n") == 1
    wrong = edge_control(*away, "site", "ls", "--url", control.url, "--token", "ewt_x", "--ca", ca)
    assert (wrong.returncode, wrong.stderr) == (1, "edge-control: the token is not valid\n")
