"""Compose files read from a path: the .env beside them, the process environment, the schema
note, and `edge-control app convert` printing the spec with warnings on stderr."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from control.cli.main import cli
from enforcer.shared.spec import compose_load, compose_schema, parse_application
from enforcer.shared.spec.compose import ComposeError
from enforcer.shared.spec.compose_load import convert_file
from enforcer.shared.spec.variables import expand

COMPOSE = """
services:
  web:
    image: registry.example:5000/web:${TAG}
    environment: {LEVEL: "${LEVEL:-info}"}
    ports: ["${PORT:-8080}:80"]
    labels: {team: web}
"""


def write(directory: Path, text: str = COMPOSE, dotenv: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "compose.yaml").write_text(text)
    if dotenv is not None:
        (directory / ".env").write_text(dotenv)
    return directory / "compose.yaml"


def test_the_env_file_beside_the_compose_file_fills_it_and_the_process_wins(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "Web_Shop", dotenv="TAG=1.0\nLEVEL=debug\nPORT=9090\n")
    document = yaml.safe_load(path.read_text())
    conversion, _ = convert_file(document, str(path), environ={"TAG": "2.0"})
    spec = conversion.document
    assert spec["name"] == "web-shop"
    main = spec["services"][0]["containers"][0]
    assert main["image"] == "registry.example:5000/web:2.0"
    assert main["env"] == {"LEVEL": "debug"}
    assert spec["services"][0]["network"]["ingress"][0]["host-port"] == 9090
    parse_application(spec)


def test_a_bad_env_file_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "shop", dotenv="TAG=1\nnot a line\n")
    with pytest.raises(ComposeError) as caught:
        convert_file(yaml.safe_load(path.read_text()), str(path), environ={})
    assert caught.value.errors == [
        f'{tmp_path / "shop" / ".env"}: line 2: expected NAME=value, got "not a line"'
    ]


def test_without_the_schema_a_note_is_given_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compose_schema, "SCHEMA_PATHS", (tmp_path / "missing.json",))
    monkeypatch.setattr(compose_load, "_noted", False)
    path = write(tmp_path / "shop", dotenv="TAG=1\n")
    document = yaml.safe_load(path.read_text())
    _, notes = convert_file(document, str(path), environ={})
    assert len(notes) == 1 and "missing.json" in notes[0] and "converted without it" in notes[0]
    assert convert_file(document, str(path), environ={})[1] == []


def run(*args: str) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, list(args), catch_exceptions=False)


def test_app_convert_prints_the_spec_and_warns_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TAG", raising=False)
    path = write(tmp_path / "shop", dotenv="TAG=3.1\n")
    result = run("app", "convert", "-f", str(path), "--name", "store")
    assert result.exit_code == 0, result.stderr
    spec = yaml.safe_load(result.stdout)
    assert spec["name"] == "store"
    assert spec["services"][0]["containers"][0]["image"] == "registry.example:5000/web:3.1"
    assert "edge-control: warning: services.web.labels: not supported, ignored" in result.stderr


def test_app_convert_refuses_a_spec_and_lists_every_problem_of_a_bad_file(tmp_path: Path) -> None:
    spec = tmp_path / "app.yaml"
    spec.write_text("name: a\nversion: '1'\nservices: []\n")
    result = run("app", "convert", "-f", str(spec))
    assert result.exit_code == 1
    assert "not a Compose file" in result.stderr
    bad = write(
        tmp_path / "bad", "services:\n  web: {build: .}\n  db: {image: x, privileged: true}\n"
    )
    result = run("app", "convert", "-f", str(bad))
    assert result.exit_code == 1 and result.stdout == ""
    assert "the Compose file cannot be converted" in result.stderr
    assert "services.web: an image is required" in result.stderr
    assert "services.db.privileged: privileged containers are refused" in result.stderr


def test_env_files_fill_the_environment_which_wins_over_them(tmp_path: Path) -> None:
    text = (
        "services:\n  web:\n    image: x\n"
        "    env_file: [common.env, {path: missing.env, required: false}]\n"
        "    environment: [LEVEL=debug, FROM_FILE]\n"
    )
    path = write(tmp_path / "shop", text)
    (tmp_path / "shop" / "common.env").write_text("LEVEL=info\nFROM_FILE=x\nPRICE='$$5'\n")
    conversion, _ = convert_file(yaml.safe_load(text), str(path), environ={})
    env = conversion.document["services"][0]["containers"][0]["env"]
    as_run = {key: expand(value, {}) for key, value in env.items()}
    assert as_run == {"LEVEL": "debug", "FROM_FILE": "x", "PRICE": "$$5"}
    assert conversion.warnings == ()
    missing = text.replace("common.env", "nowhere.env")
    with pytest.raises(ComposeError) as caught:
        convert_file(yaml.safe_load(missing), str(path), environ={})
    assert caught.value.errors == [
        f"services.web.env_file[0]: {tmp_path / 'shop' / 'nowhere.env'} does not exist"
    ]
