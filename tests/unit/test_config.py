"""enforcer.toml: defaults, every key, and errors that name the file and line."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from enforcer.config import load as config_module
from enforcer.config.load import ensure_api_token, load_config
from enforcer.config.model import ApiConfig, ConfigError, EnforcerConfig
from enforcer.config.reader import parse_listen

FULL = """\
# every key
state-dir = "/srv/edgeward"

[docker]
host = "unix:///run/private-docker.sock"
timeout = "2m"

[api]
socket = "/run/ew/enforcer.sock"
listen = "0.0.0.0:7700"
token-file = "/etc/edgeward/api-token"
tenant-tokens = { acme = "@/etc/edgeward/tokens/acme", globex = "literal-token" }
tls-cert = "/etc/edgeward/api.crt"
tls-key = "/etc/edgeward/api.key"

[host]
id = "host-a"
labels = { zone = "line-1", "vendor.example/rack" = "r7" }

[site]
name = "store-042"
labels = { customer = "acme" }

[control]
enrollment = "@/etc/edgeward/bundle"

[cluster]

[[devices.rule]]
label = "camera"
match = { SUBSYSTEM = "video4linux", "ID_V4L_CAPABILITIES" = "*capture*" }

[[devices.rule]]
label = "serial-gps"
match = { SUBSYSTEM = "tty", ID_VENDOR_ID = "1546" }

[restart]
initial-delay = "500ms"
max-delay = "2m"
reset-after = "1h"

[reconcile]
resync-interval = "1m30s"
docker-parallelism = 8

[runtime]
stop-grace = "20s"

[logs]
max-size = "4Mi"
max-files = 2

[secrets]
dir = "/run/ew/secrets"
"""


def write(tmp_path: Path, text: str, name: str = "enforcer.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


@pytest.fixture(autouse=True)
def no_default_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGEWARD_CONFIG", raising=False)
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")


def test_a_missing_file_at_the_default_path_gives_every_default() -> None:
    config = load_config(None)
    assert config.source is None
    assert config.state_dir == Path("/var/lib/edgeward/enforcer")
    assert config.docker.host == "unix:///var/run/docker.sock"
    assert config.api == ApiConfig(
        socket=Path("/run/edgeward/enforcer.sock"),
        listen="",
        token_file=Path("/var/lib/edgeward/enforcer/api-token"),
    )
    assert config.host.id  # /etc/machine-id, else the hostname
    assert dict(config.host.labels) == {}
    assert config.site.name  # the hostname
    assert config.control.enrollment == ""
    assert config.devices.rules == ()
    assert (config.restart.initial_delay, config.restart.max_delay) == (0.2, 300.0)
    assert config.restart.reset_after == 600.0
    assert config.reconcile.resync_interval == 30.0
    assert config.reconcile.docker_parallelism == 8
    assert config.runtime.stop_grace == 10.0
    assert config.secrets.dir == Path("/run/edgeward/secrets")


def test_an_empty_file_is_all_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    config = load_config(path)
    assert config.source == path
    assert replace(config, source=None) == load_config(None)


def test_every_key_is_read(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.state_dir == Path("/srv/edgeward")
    assert config.docker.host == "unix:///run/private-docker.sock"
    assert config.docker.timeout == 120.0
    assert config.api.socket == Path("/run/ew/enforcer.sock")
    assert config.api.tls_cert == Path("/etc/edgeward/api.crt")
    assert config.api.tls_key == Path("/etc/edgeward/api.key")
    assert config.api.listen == "0.0.0.0:7700"
    assert config.api.token_file == Path("/etc/edgeward/api-token")
    assert config.host.id == "host-a"
    assert dict(config.host.labels) == {"zone": "line-1", "vendor.example/rack": "r7"}
    assert config.site.name == "store-042"
    assert dict(config.site.labels) == {"customer": "acme"}
    assert config.control.enrollment == "@/etc/edgeward/bundle"
    assert [rule["label"] for rule in config.devices.raw_rules] == ["camera", "serial-gps"]
    assert len(config.devices.rules) == 2
    assert config.restart.initial_delay == 0.5
    assert config.restart.max_delay == 120.0
    assert config.restart.reset_after == 3600.0
    assert config.reconcile.resync_interval == 90.0
    assert config.reconcile.docker_parallelism == 8
    assert config.runtime.stop_grace == 20.0
    assert (config.logs.max_size, config.logs.max_files) == (4 * 1024 * 1024, 2)
    assert config.secrets.dir == Path("/run/ew/secrets")
    assert dict(config.api.tenant_tokens) == {
        "acme": "@/etc/edgeward/tokens/acme",
        "globex": "literal-token",
    }


def test_device_rules_are_parsed_by_enforcer_devices_where_it_exists(tmp_path: Path) -> None:
    from enforcer.devices import rules as devices

    config = load_config(write(tmp_path, FULL))
    assert config.devices.rules == tuple(devices.parse_rules(config.devices.raw_rules))


def test_a_bad_device_rule_names_its_line(tmp_path: Path) -> None:
    text = '[[devices.rule]]\nlabel = "a"\nmatch = { A = "b" }\n\n[[devices.rule]]\nmatch = {}\n'
    message = error_of(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'enforcer.toml'}:")
    assert "devices.rule[1]" in message
    line = int(message.split(":")[1])
    assert line in (5, 6)


def test_the_state_dir_override_moves_the_default_token_file(tmp_path: Path) -> None:
    config = load_config(None, state_dir=tmp_path / "state")
    assert config.state_dir == tmp_path / "state"
    assert config.api.token_file == tmp_path / "state" / "api-token"
    config = load_config(write(tmp_path, FULL), state_dir=tmp_path / "state")
    assert config.state_dir == tmp_path / "state"
    assert config.api.token_file == Path("/etc/edgeward/api-token")  # written: kept
    config = load_config(write(tmp_path, 'state-dir = "/x"\n'))
    assert config.api.token_file == Path("/x/api-token")


def test_an_explicit_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.toml: no such file"):
        load_config(tmp_path / "absent.toml")


def test_the_environment_names_the_default_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[site]\nname = "from-env"\n', "env.toml")
    monkeypatch.setenv("EDGEWARD_CONFIG", str(path))
    assert load_config(None).site.name == "from-env"
    monkeypatch.setenv("EDGEWARD_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone\.toml: no such file"):
        load_config(None)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("stat-dir = '/x'\n", 1, 'unknown key "stat-dir"'),
        ("# c\n[docker]\nhost = 'unix:///x'\nhots = 1\n", 4, 'unknown key "docker.hots"'),
        ("[api]\n\nsocket = '/x'\n\nlisten2 = ''\n", 5, 'unknown key "api.listen2"'),
        ("[cluster]\nmembers = []\n", 2, 'unknown key "cluster.members"'),
        ("[devices]\nrules = []\n", 2, 'unknown key "devices.rules"'),
        ("[sites]\nname = 'x'\n", 1, 'unknown key "sites"'),
        ("docker.hots = 'x'\n", 1, 'unknown key "docker.hots"'),
    ],
)
def test_an_unknown_key_names_the_file_and_line(
    tmp_path: Path, text: str, line: int, expected: str
) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'enforcer.toml'}:{line}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("state-dir = 7\n", 1, "state-dir: expected a string, got an integer"),
        ("[docker]\nhost = true\n", 2, "docker.host: expected a string, got a boolean"),
        ("docker = 'x'\n", 1, "docker: expected a table, got a string"),
        ("[reconcile]\ndocker-parallelism = '4'\n", 2, "expected an integer, got a string"),
        ("[reconcile]\ndocker-parallelism = 0\n", 2, "must be at least 1"),
        ("[logs]\nmax-size = '10M'\n", 2, 'logs.max-size: "10M" is not a size'),
        ("[logs]\nmax-size = 1000\n", 2, "logs.max-size: must be at least 64Ki"),
        ("[logs]\nmax-files = 0\n", 2, "logs.max-files: must be at least 1"),
        ("[host]\n\nlabels = { zone = 1 }\n", 3, 'label "zone" must be a string'),
        ("[site]\nlabels = { 'system/name' = 'x' }\n", 2, "system/ labels are set by Edgeward"),
        ("[api]\nlisten = 'everywhere'\n", 2, "is not host:port"),
        ("[api]\nsocket = ''\n", 2, "api.socket: must not be empty"),
        ("[restart]\ninitial-delay = 5\n", 2, 'expected a duration such as "10s"'),
        ("[docker]\nhost = '/var/run/docker.sock'\n", 2, "is not an address"),
        ("[secrets]\ndir = 'run/secrets'\n", 2, 'secrets.dir: "run/secrets" is not absolute'),
        ("[secrets]\nsize = '1Mi'\n", 2, 'unknown key "secrets.size"'),
        ("[api]\ntenant-tokens = 'x'\n", 2, "api.tenant-tokens: expected a table"),
        ("[api]\ntenant-tokens = { Acme = 'x' }\n", 2, '"Acme" is not a tenant name'),
        ("[api]\ntenant-tokens = { acme = '@' }\n", 2, 'expected a token or "@/path'),
        ("[api]\ntenant-tokens = { acme = 3 }\n", 2, 'expected a token or "@/path'),
    ],
)
def test_a_wrong_type_names_the_file_and_line(
    tmp_path: Path, text: str, line: int, expected: str
) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'enforcer.toml'}:{line}: ")
    assert expected in message


def test_a_bad_duration_names_the_key_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[restart]\ninitial-delay = "1s"\nmax-delay = "10x"\n')
    assert message.startswith(f"{tmp_path / 'enforcer.toml'}:3: restart.max-delay: ")
    assert '"10x" is not a duration' in message
    message = error_of(tmp_path, '[runtime]\nstop-grace = "10"\n')
    assert ":2: runtime.stop-grace:" in message


def test_max_delay_below_initial_delay_is_an_error(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[restart]\ninitial-delay = "10s"\nmax-delay = "1s"\n')
    assert ":3: restart.max-delay" in message


def test_a_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[docker]\nhost = "unix:///x\n')
    assert message.startswith(f"{tmp_path / 'enforcer.toml'}: ")
    assert "line 2" in message
    assert "column" in message


def test_lines_are_found_past_multiline_values(tmp_path: Path) -> None:
    text = (
        "[[devices.rule]]\n"
        'label = "x"\n'
        "match = { A = '''\n"
        "bogus = 1\n"
        "''' }\n"
        "[host]\n"
        "labels = {}\n"
        "name = 'x'\n"
    )
    with pytest.raises(ConfigError) as info:
        config_module.parse_config(text, Path("e.toml"))
    assert str(info.value).startswith('e.toml:8: unknown key "host.name"')


def test_parse_listen() -> None:
    assert parse_listen("0.0.0.0:7700") == ("0.0.0.0", 7700)
    assert parse_listen("[::1]:7700") == ("::1", 7700)
    assert parse_listen(":7700") == ("", 7700)
    assert parse_listen("localhost:0") == ("localhost", 0)
    for bad in ("7700", "host:", "host:99999", "a:b:7700"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_the_api_token_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    config = EnforcerConfig(
        state_dir=tmp_path,
        api=ApiConfig(listen="127.0.0.1:7700", token_file=tmp_path / "sub" / "api-token"),
    )
    token = ensure_api_token(config)
    assert token is not None
    assert len(token) >= 32
    path = tmp_path / "sub" / "api-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_api_token(config) == token
    assert ensure_api_token(replace(config, api=replace(config.api, listen=""))) is None
    path.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        ensure_api_token(config)


def test_a_tls_certificate_without_its_key_names_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[api]\nlisten = "0.0.0.0:7700"\ntls-cert = "/x.crt"\n')
    assert message.endswith(
        "enforcer.toml:3: api.tls-cert and api.tls-key go together: give both or neither"
    )
    message = error_of(tmp_path, '[api]\n\ntls-key = "/x.key"\n')
    assert ":3: api.tls-cert and api.tls-key go together" in message


def test_a_docker_timeout_below_a_second_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[docker]\ntimeout = "200ms"\n')
    assert message.endswith("enforcer.toml:2: docker.timeout: must be at least 1s")
