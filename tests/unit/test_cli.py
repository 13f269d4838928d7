"""edge-enforcer's site-local commands against a real `serve()`d unix socket and a fake daemon.

The API runs in a background thread's event loop; click's CliRunner drives the commands, which
reach it through the socket named in a real configuration file.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result

from enforcer.api import ApiServer, serve
from enforcer.api.tls import self_signed_certificate, server_context
from enforcer.cli.client import Client, ClientError, EnforcerUnreachable
from enforcer.cli.main import main
from enforcer.config.model import EnforcerConfig
from enforcer.facade import InstanceState

from .fake_enforcer import FakeEnforcer, instance

T = TypeVar("T")

SPEC = """\
name: vision
version: "1.0"
services:
  - name: detector
    containers: [{name: main, image: busybox}]
"""


class BackgroundApi:
    """serve() in an event loop of its own thread."""

    def __init__(
        self,
        fake: FakeEnforcer,
        socket_path: Path,
        listen: str = "",
        token: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api", daemon=True)
        self.thread.start()
        self.server: ApiServer = self.call(serve(fake, socket_path, listen, token, tls=tls))

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def stop(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class Cli:
    def __init__(self, config: Path, fake: FakeEnforcer) -> None:
        self.config = config
        self.fake = fake

    def __call__(self, *args: str, input: str | None = None) -> Result:
        try:
            runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
        except TypeError:
            runner = CliRunner()
        return runner.invoke(
            main, ["--config", str(self.config), *args], input=input, catch_exceptions=False
        )


def write_config(tmp_path: Path, socket_path: Path) -> Path:
    config = tmp_path / "enforcer.toml"
    config.write_text(f'state-dir = "{tmp_path / "state"}"\n[api]\nsocket = "{socket_path}"\n')
    return config


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    socket_path = tmp_path / "run" / "enforcer.sock"
    fake = FakeEnforcer()
    api = BackgroundApi(fake, socket_path)
    try:
        yield Cli(write_config(tmp_path, socket_path), fake)
    finally:
        api.stop()


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edge-enforcer: error: ")
    assert "Traceback" not in result.output
    return lines[0]


# --- ps -----------------------------------------------------------------------------------------


def test_ps_prints_a_table_with_state_restarts_and_reason(cli: Cli) -> None:
    cli.fake.instance_list = [
        instance("vision.detector.1", InstanceState.BACKOFF, reason="crashed", restarts=3,
                 last_exit_code=2, next_retry=time.time() + 4.3),
        instance("vision.detector.0"),
        instance("vision.tracker.0", InstanceState.PENDING,
                 reason="host-a: no device labelled camera"),
    ]  # fmt: skip
    result = cli("ps")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "INSTANCE", "APP", "SERVICE", "HOST", "STATE", "READY", "RESTARTS", "REASON",
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == [
        "vision.detector.0",
        "vision.detector.1",
        "vision.tracker.0",
    ]
    assert lines[1].split()[:7] == [
        "vision.detector.0", "vision", "detector", "host-a", "running", "yes", "0",
    ]  # fmt: skip
    assert re.search(r"backoff\s+no\s+3\s+crashed; exit code 2; next retry in [34]s$", lines[2])
    assert lines[3].endswith("pending  no     0         host-a: no device labelled camera")
    # columns line up
    assert len({line.index(" vision") for line in lines[1:] if " vision" in line}) == 1


def test_ps_json_is_the_api_records(cli: Cli) -> None:
    cli.fake.instance_list = [instance("vision.detector.0")]
    result = cli("ps", "-o", "json")
    assert result.exit_code == 0, result.output
    expected = json.loads(json.dumps([i.to_json() for i in cli.fake.instance_list]))
    assert json.loads(result.stdout) == expected


# --- apply and rm -------------------------------------------------------------------------------


def test_apply_creates_then_reports_unchanged(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "vision.yaml"
    spec.write_text(SPEC)
    result = cli("apply", "-f", str(spec))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "application vision created"
    assert cli.fake.apps["vision"].version == "1.0"
    assert cli("apply", "-f", str(spec)).stdout.strip() == "application vision unchanged"
    spec.write_text(SPEC.replace('"1.0"', '"1.1"'))
    assert cli("apply", "-f", str(spec)).stdout.strip() == "application vision configured"


def test_apply_reads_stdin_and_json(cli: Cli, tmp_path: Path) -> None:
    result = cli("apply", "-f", "-", input=SPEC)
    assert result.exit_code == 0, result.output
    spec = tmp_path / "other.json"
    spec.write_text(json.dumps({"name": "other", "version": "2"}))
    assert cli("apply", "-f", str(spec)).exit_code == 0
    assert sorted(cli.fake.apps) == ["other", "vision"]


def test_apply_with_a_yaml_syntax_error_names_line_and_column(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text('name: vision\nversion: "1.0"\nservices:\n  - name: [detector\n')
    line = one_error_line(cli("apply", "-f", str(spec)))
    assert line.startswith(f"edge-enforcer: error: {spec}: YAML syntax error at line ")
    assert re.search(r"line \d+, column \d+", line)
    assert cli.fake.apps == {}  # nothing was sent


def test_apply_of_an_invalid_spec_lists_each_error_path(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "vision.yaml"
    spec.write_text(SPEC + "invalid: true\n")
    result = cli("apply", "-f", str(spec))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"edge-enforcer: error: {spec}: invalid application spec"
    assert lines[1].strip().startswith("services[0].replicas:")
    assert lines[2].strip().startswith("services[0].containers[1].probes.liveness.period:")


def test_apply_of_a_missing_file_is_one_line(cli: Cli, tmp_path: Path) -> None:
    line = one_error_line(cli("apply", "-f", str(tmp_path / "nope.yaml")))
    assert "nope.yaml: no such file" in line


def test_rm_removes_and_passes_purge(cli: Cli) -> None:
    assert cli("apply", "-f", "-", input=SPEC).exit_code == 0
    result = cli("rm", "vision", "--purge")
    assert result.exit_code == 0, result.output
    assert "application vision removed" in result.stdout
    assert cli.fake.removed == [("vision", True)]


def test_rm_of_an_unknown_app_is_one_line_and_exit_1(cli: Cli) -> None:
    line = one_error_line(cli("rm", "ghost"))
    assert line == 'edge-enforcer: error: no application "ghost"'


# --- status -------------------------------------------------------------------------------------


def test_status_shows_site_leader_control_and_runtime(cli: Cli) -> None:
    result = cli("status")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"^site:\s+store-042", out, re.M)
    assert re.search(r"^leader:\s+host-a$", out, re.M)
    assert re.search(r"^control:\s+not enrolled", out, re.M)
    assert re.search(r"^runtime:\s+available$", out, re.M)


def test_status_check_exits_0_when_healthy_and_1_when_not(cli: Cli) -> None:
    assert cli("status", "--check").exit_code == 0
    cli.fake.healthy = False
    result = cli("status", "--check")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "edge-enforcer: error: unhealthy: runtime unavailable: cannot connect to Docker"
    )
    assert cli("status").exit_code == 0  # without --check it only reports


def test_status_json(cli: Cli) -> None:
    result = cli("status", "-o", "json")
    body = json.loads(result.stdout)
    assert body["site"]["name"] == "store-042"
    assert body["health"]["healthy"] is True


# --- logs, events, devices ----------------------------------------------------------------------


def test_logs_prints_the_output_and_unknown_instances_fail(cli: Cli) -> None:
    cli.fake.instance_list = [instance("vision.detector.0")]
    cli.fake.log_chunks[("vision.detector.0", "main")] = [b"one\n", b"two\n"]
    result = cli("logs", "vision.detector.0")
    assert result.exit_code == 0, result.output
    assert result.stdout == "one\ntwo\n"
    assert cli("logs", "vision.detector.0", "--tail", "1").stdout == "two\n"
    line = one_error_line(cli("logs", "vision.detector.9"))
    assert line == 'edge-enforcer: error: no instance "vision.detector.9"'


def test_events_print_lines_or_json(cli: Cli) -> None:
    cli.fake.emit("instance.crashed", "main exited with code 2", instance="vision.detector.0")
    cli.fake.emit("app.applied", "application vision applied", app="vision")
    result = cli("events")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("instance.crashed  vision.detector.0  main exited with code 2")
    result = cli("events", "-o", "json", "--since", "1")
    assert [json.loads(line)["kind"] for line in result.stdout.splitlines()] == ["app.applied"]


def test_devices_lists_devices_gpus_and_capacity(cli: Cli) -> None:
    result = cli("devices")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"^/dev/video0\s+video4linux\s+camera$", out, re.M)
    assert re.search(r"^0\s+NVIDIA Corporation\s+GA102GL \[A10\]\s+24Gi\s+/dev/nvidia0$", out, re.M)
    assert "capacity: 8 cpus, 16Gi memory, 1 GPUs" in out
    assert json.loads(cli("devices", "-o", "json").stdout)["id"] == "host-a"


# --- when the daemon cannot be reached ----------------------------------------------------------


def run_without_daemon(tmp_path: Path, *args: str) -> Result:
    config = write_config(tmp_path, tmp_path / "enforcer.sock")
    return Cli(config, FakeEnforcer())(*args)


def test_no_socket_says_so_and_names_it(tmp_path: Path) -> None:
    for args in (("ps",), ("status", "--check")):
        line = one_error_line(run_without_daemon(tmp_path, *args))
        assert line == (
            f"edge-enforcer: error: cannot reach the enforcer at {tmp_path / 'enforcer.sock'}: "
            "no such file (is edge-enforcer running?)"
        )


def test_a_socket_nobody_listens_on_is_connection_refused(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "enforcer.sock"))
    stale.close()
    line = one_error_line(run_without_daemon(tmp_path, "status", "--check"))
    assert line.endswith("enforcer.sock: connection refused (is edge-enforcer running?)")


def test_a_socket_without_permission_says_so() -> None:
    from tests.support.users import as_user, open_dir  # root may connect to any socket

    with open_dir() as where:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(where / "enforcer.sock"))
        listener.listen()
        os.chmod(where / "enforcer.sock", 0)
        try:
            line = as_user(lambda: one_error_line(run_without_daemon(where, "ps")))
        finally:
            listener.close()
    assert line.endswith("enforcer.sock: permission denied (run as root or as a member of the "
                         "group edgeward)")  # fmt: skip


def test_a_bad_configuration_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "enforcer.toml"
    config.write_text("[api]\nsocket = '/x'\nsockett = '/y'\n")
    line = one_error_line(Cli(config, FakeEnforcer())("ps"))
    assert line.startswith(f'edge-enforcer: error: {config}:3: unknown key "api.sockett"')


def test_the_config_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEWARD_CONFIG", str(tmp_path / "missing.toml"))
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(main, ["ps"], catch_exceptions=False)
    assert one_error_line(result).endswith("missing.toml: no such file")


def test_permission_denied_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, address: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    line = one_error_line(run_without_daemon(tmp_path, "ps"))
    assert line.endswith(
        "enforcer.sock: permission denied (run as root or as a member of the group edgeward)"
    )


# --- the client on its own ----------------------------------------------------------------------


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_client_follows_logs_and_events_as_they_come(tmp_path: Path) -> None:
    fake = FakeEnforcer()
    fake.instance_list = [instance("vision.detector.0")]
    fake.log_chunks[("vision.detector.0", "main")] = [b"one\n"]
    fake.emit("app.applied", "first")
    api = BackgroundApi(fake, tmp_path / "enforcer.sock")
    try:
        client = Client(tmp_path / "enforcer.sock", timeout=5)
        logs = client.logs("vision.detector.0", follow=True)
        assert next(logs) == b"one\n"
        wait_for(lambda: fake.log_feed is not None)
        queue = fake.log_feed
        assert queue is not None
        api.loop.call_soon_threadsafe(queue.put_nowait, b"two\n")
        assert next(logs) == b"two\n"
        logs.close()
        wait_for(lambda: fake.log_followers == 0)

        events = client.events(follow=True)
        assert next(events)["message"] == "first"
        api.loop.call_soon_threadsafe(lambda: fake.emit("instance.started", "second"))
        assert next(events)["message"] == "second"
        events.close()
        wait_for(lambda: fake.event_followers == 0)
    finally:
        api.stop()


def test_the_client_over_tcp_sends_its_token(tmp_path: Path) -> None:
    fake = FakeEnforcer()
    api = BackgroundApi(fake, tmp_path / "enforcer.sock", "127.0.0.1:0", "s3cret")
    try:
        assert api.server.tcp_address is not None
        host, port = api.server.tcp_address
        url = f"http://{host}:{port}"
        assert Client(url=url, token="s3cret").site()["name"] == "store-042"
        with pytest.raises(ClientError) as info:
            Client(url=url, token="wrong").site()
        assert info.value.status == 401
        assert info.value.code == "unauthorized"
        assert info.value.message == "wrong bearer token"
    finally:
        api.stop()
    with pytest.raises(EnforcerUnreachable, match="connection refused"):
        Client(url=url, token="s3cret").site()


# --- run and enroll hand over to their modules --------------------------------------------------


@pytest.fixture
def daemon_runs(monkeypatch: pytest.MonkeyPatch) -> list[EnforcerConfig]:
    """The configurations `run` hands to the daemon (which does not start)."""
    from enforcer import daemon

    seen: list[EnforcerConfig] = []
    monkeypatch.setattr(daemon, "run_daemon", seen.append)
    return seen


def test_run_hands_the_loaded_config_to_the_daemon(
    tmp_path: Path, daemon_runs: list[EnforcerConfig]
) -> None:
    seen = daemon_runs
    config = write_config(tmp_path, tmp_path / "enforcer.sock")
    result = Cli(config, FakeEnforcer())("--state-dir", str(tmp_path / "other"), "run")
    assert result.exit_code == 0, result.output
    assert seen[0].state_dir == tmp_path / "other"
    assert seen[0].api.socket == tmp_path / "enforcer.sock"


def test_enroll_reads_the_bundle_from_a_file_and_reports_failure_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from enforcer.link import enrollment

    calls: list[tuple[str, Path]] = []

    async def enroll(bundle: str, state_dir: Path) -> Any:
        calls.append((bundle, state_dir))
        if bundle == "bad":
            raise enrollment.EnrollmentError("the bundle has expired")
        return SimpleNamespace(site="store-042", url="https://control:7443")

    monkeypatch.setattr(enrollment, "enroll", enroll)
    bundle = tmp_path / "bundle"
    bundle.write_text("BUNDLE-TEXT\n")
    cli = Cli(write_config(tmp_path, tmp_path / "enforcer.sock"), FakeEnforcer())
    result = cli("enroll", f"@{bundle}")
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.strip() == "enrolled as site store-042 with control at https://control:7443"
    )
    assert calls == [("BUNDLE-TEXT", tmp_path / "state")]
    line = one_error_line(cli("enroll", "bad"))
    assert line == "edge-enforcer: error: enrollment failed: the bundle has expired"


# --- connection options: before or after the command, or from the environment ---------------


@pytest.fixture
def tcp_api(tmp_path: Path) -> Iterator[str]:
    fake = FakeEnforcer()
    fake.instance_list = [instance("vision.detector.0")]
    api = BackgroundApi(fake, tmp_path / "enforcer.sock", "127.0.0.1:0", "s3cret")
    try:
        assert api.server.tcp_address is not None
        host, port = api.server.tcp_address
        yield f"http://{host}:{port}"
    finally:
        api.stop()


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()
    return runner.invoke(main, args, env=env, catch_exceptions=False)


def test_url_and_token_go_before_or_after_the_command(tcp_api: str) -> None:
    for args in (
        ["--url", tcp_api, "--token", "s3cret", "ps"],
        ["ps", "--url", tcp_api, "--token", "s3cret"],
        ["--url", tcp_api, "ps", "-o", "json", "--token", "s3cret"],
    ):
        result = invoke(args)
        assert result.exit_code == 0, (args, result.output)
        assert "vision.detector.0" in result.stdout


def test_an_option_after_the_command_wins_over_one_before_it(tcp_api: str) -> None:
    assert invoke(["--url", tcp_api, "--token", "wrong", "ps", "--token", "s3cret"]).exit_code == 0
    line = one_error_line(invoke(["--url", tcp_api, "--token", "s3cret", "ps", "--token", "no"]))
    assert line == "edge-enforcer: error: wrong bearer token"


def test_url_and_token_come_from_the_environment_below_the_command_line(
    tcp_api: str, tmp_path: Path
) -> None:
    env = {"EDGEWARD_URL": tcp_api, "EDGEWARD_TOKEN": "s3cret"}
    assert invoke(["ps"], env).exit_code == 0
    assert invoke(["status", "--check"], env).exit_code == 0
    line = one_error_line(invoke(["ps"], {**env, "EDGEWARD_TOKEN": "wrong"}))
    assert line == "edge-enforcer: error: wrong bearer token"
    wrong = {**env, "EDGEWARD_TOKEN": "wrong"}
    assert invoke(["--token", "s3cret", "ps"], wrong).exit_code == 0
    assert invoke(["ps", "--token", "s3cret"], wrong).exit_code == 0
    elsewhere = {"EDGEWARD_URL": "http://127.0.0.1:1", "EDGEWARD_TOKEN": "s3cret"}
    assert invoke(["ps", "--url", tcp_api], elsewhere).exit_code == 0


def test_config_goes_before_or_after_the_command(cli: Cli) -> None:
    cli.fake.instance_list = [instance("vision.detector.0")]
    for args in (["--config", str(cli.config), "ps"], ["ps", "--config", str(cli.config)]):
        result = invoke(args, {"EDGEWARD_CONFIG": "/nonexistent.toml"})
        assert result.exit_code == 0, (args, result.output)
        assert "vision.detector.0" in result.stdout
    line = one_error_line(invoke(["ps"], {"EDGEWARD_CONFIG": "/nonexistent.toml"}))
    assert line.endswith("/nonexistent.toml: no such file")


def test_the_daemon_takes_config_after_run_but_no_connection_options(
    tmp_path: Path, daemon_runs: list[EnforcerConfig]
) -> None:
    config = write_config(tmp_path, tmp_path / "enforcer.sock")
    assert invoke(["run", "--config", str(config)]).exit_code == 0
    assert daemon_runs[0].api.socket == tmp_path / "enforcer.sock"
    refused = invoke(["run", "--url", "http://127.0.0.1:7700"])
    assert refused.exit_code == 2
    assert "No such option: --url" in refused.stderr or "No such option '--url'" in refused.stderr


# Debian 12's aiohttp (3.8) leaves the socket of a TLS handshake that the client refused to the
# garbage collector; newer aiohttp closes it. The behaviour under test is the CLI's one line.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Transport.*:pytest.PytestUnraisableExceptionWarning"
)
def test_an_https_daemon_is_verified_against_ca_and_a_failure_is_one_line(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path / "state", "host-a")
    tls = server_context("127.0.0.1", cert, key, tmp_path / "state", "host-a")
    api = BackgroundApi(FakeEnforcer(), tmp_path / "enforcer.sock", "127.0.0.1:0", "s3cret", tls)
    try:
        assert api.server.tcp_address is not None
        url = f"https://127.0.0.1:{api.server.tcp_address[1]}"
        for args in (
            ["--url", url, "--token", "s3cret", "--ca", str(cert), "status"],
            ["status", "--url", url, "--token", "s3cret", "--ca", str(cert)],
        ):
            result = invoke(args)
            assert result.exit_code == 0, result.output
            assert "store-042" in result.stdout
        assert invoke(["status"], {"EDGEWARD_URL": url, "EDGEWARD_TOKEN": "s3cret",
                                   "EDGEWARD_CA": str(cert)}).exit_code == 0  # fmt: skip
        line = one_error_line(invoke(["status", "--url", url, "--token", "s3cret"]))
        assert line.startswith(
            f"edge-enforcer: error: cannot reach the enforcer at {url}: TLS failed: "
        )
        assert "self-signed certificate" in line
        missing = tmp_path / "missing.pem"
        line = one_error_line(invoke(["status", "--url", url, "--ca", str(missing)]))
        assert line == (
            f"edge-enforcer: error: cannot read the CA certificate {missing}: "
            "no such file or directory"
        )
    finally:
        api.stop()
