"""The one CLI convention: shared options before or after the command, or from the environment."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from enforcer.shared.cli_options import SharedGroup, SharedOption, not_taking, shared_values


class Group(SharedGroup):
    shared = (SharedOption("--url", envvar="TEST_URL", help="where"),)


@click.group(cls=Group)
def cli() -> None:
    """A CLI with one shared option."""


@cli.command()
@click.option("--name", default="-")
def show(name: str) -> None:
    click.echo(f"{shared_values(click.get_current_context()).get('url')} {name}")


@cli.group()
def sub() -> None:
    """A subgroup."""


@sub.command("ls")
def sub_ls() -> None:
    click.echo(str(shared_values(click.get_current_context()).get("url")))


@click.group()
def plain() -> None:
    """A group made elsewhere, added later."""


@plain.command("ls")
@click.pass_context
def plain_ls(ctx: click.Context) -> None:
    click.echo(str(shared_values(ctx).get("url")))


@cli.command()
@not_taking("url")
def local() -> None:
    click.echo("local")


cli.add_command(plain)


def invoke(*args: str, **env: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env=env or None, catch_exceptions=False)
    return result.exit_code, result.output.strip()


@pytest.mark.parametrize(
    ("args", "env", "url"),
    [
        (("show",), {}, "None"),
        (("show",), {"TEST_URL": "env"}, "env"),
        (("--url", "before", "show"), {"TEST_URL": "env"}, "before"),
        (("show", "--url", "after"), {"TEST_URL": "env"}, "after"),
        (("--url", "before", "show", "--url", "after"), {}, "after"),
        (("--url", "before", "show", "--name", "x"), {}, "before"),
    ],
)
def test_after_the_command_wins_over_before_it_which_wins_over_the_environment(
    args: tuple[str, ...], env: dict[str, str], url: str
) -> None:
    code, out = invoke(*args, **env)
    assert code == 0, out
    assert out.split()[0] == url


def test_commands_of_subgroups_and_of_groups_added_later_take_them_too() -> None:
    assert invoke("sub", "ls", "--url", "u") == (0, "u")
    assert invoke("--url", "b", "sub", "ls") == (0, "b")
    assert invoke("plain", "ls", "--url", "u", TEST_URL="env") == (0, "u")
    assert invoke("plain", "ls", TEST_URL="env") == (0, "env")


def test_a_command_can_refuse_a_shared_option_after_it() -> None:
    assert invoke("local") == (0, "local")
    code, out = invoke("local", "--url", "u")
    assert code == 2 and "--url" in out
