"""The README stays true: its two commands, its links, and every command it shows."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import click
import pytest

from tests.unit.test_docs import _root_group, _scripts

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _code_lines() -> list[str]:
    blocks = re.findall(r"```(?:sh|bash)?\n(.*?)```", README, re.S)
    return [line for block in blocks for line in block.splitlines()]


def test_the_first_two_commands_are_quickstart_and_the_test_suite() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#", 1)[0].strip() for line in first_block.group(1).splitlines()]
    assert commands[:2] == ["sudo scripts/quickstart.sh", "sudo scripts/test.sh"]
    for script in ("scripts/quickstart.sh", "scripts/test.sh"):
        assert os.access(ROOT / script, os.X_OK), f"{script} is not an executable file"


def test_the_readme_links_to_the_docs_and_to_nothing_outside_the_repository() -> None:
    assert "](docs/README.md)" in README
    assert "../" not in README
    assert "DESIGN.md" not in README


def test_every_repository_path_the_readme_names_exists() -> None:
    top = {p.name for p in ROOT.iterdir()}
    named = [
        word.rstrip("/")
        for word in re.findall(r"`([^`\s]+)`", README)
        if word.split("/", 1)[0] in top and "/" in word
    ]
    assert named, "the README names no repository paths any more?"
    missing = [w for w in named if not list(ROOT.glob(w))]
    assert missing == []


def _shown_commands() -> list[str]:
    programs = tuple(f"{name} " for name in _scripts())
    return [line.split("#", 1)[0].strip() for line in _code_lines() if line.startswith(programs)]


@pytest.mark.parametrize("line", _shown_commands())
def test_every_command_the_readme_shows_exists_with_its_options(line: str) -> None:
    words = shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " "))
    program, rest = words[0], words[1:]
    root = _root_group(_scripts()[program])
    command: click.Command = root
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    assert command is not root, f"{line}: no such command"
    assert not isinstance(command, click.Group), f"{line}: {rest[:1]} is not a subcommand"
    known = {
        flag
        for cmd in (root, command)
        for param in cmd.params
        if isinstance(param, click.Option)
        for flag in (*param.opts, *param.secondary_opts)
    }
    flags = [w.split("=", 1)[0] for w in rest if w.startswith("-") and w != "-"]
    assert [f for f in flags if f not in known] == []
