"""Compose's variable interpolation and .env files, as Compose reads them."""

from __future__ import annotations

import pytest

from enforcer.shared.spec.compose_env import interpolate, interpolate_document, parse_dotenv

ENV = {"SET": "value", "EMPTY": "", "PORT": "8080", "OTHER": "other"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${SET}", "value"),
        ("$SET/x", "value/x"),
        ("a-${SET}-b", "a-value-b"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${MISSING-fallback}", "fallback"),
        ("${SET:-fallback}", "value"),
        ("${SET:+given}", "given"),
        ("${EMPTY:+given}", ""),
        ("${EMPTY+given}", "given"),
        ("${MISSING+given}", ""),
        ("${MISSING:-${OTHER}}", "other"),
        ("${MISSING:-${ALSO_MISSING:-deep}}", "deep"),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("cost: $$5", "cost: $5"),
        ("${MISSING:-a:b/c}", "a:b/c"),
    ],
)
def test_compose_interpolation_forms(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${MISSING:?the database password}", "MISSING is not set: the database password"),
        ("${EMPTY:?needed}", "EMPTY is empty: needed"),
        ("${MISSING?}", "MISSING is not set: is required"),
        ("${SET", "not closed"),
        ("${1BAD}", "not a valid reference"),
        ("${SET%x}", "not a valid reference"),
        ("price $ 5", 'write "$$" for a literal "$"'),
        ("$1", 'write "$$"'),
    ],
)
def test_bad_references_and_required_variables_are_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        interpolate(text, ENV)
    assert message in str(caught.value)


def test_an_unset_variable_becomes_empty_with_a_warning_naming_the_path() -> None:
    doc = {"services": {"web": {"image": "shop:${TAG}", "ports": ["${PORT}:80"], "x": 3}}}
    result, warnings, errors = interpolate_document(doc, ENV)
    assert result == {"services": {"web": {"image": "shop:", "ports": ["8080:80"], "x": 3}}}
    assert warnings == ["services.web.image: variable TAG is not set; using an empty string"]
    assert errors == []


def test_interpolation_errors_name_their_path_and_keys_are_not_interpolated() -> None:
    doc = {"services": {"${SET}": {"command": ["echo", "${A:?give A}"]}}}
    result, _, errors = interpolate_document(doc, ENV)
    assert list(result["services"]) == ["${SET}"]  # type: ignore[index]
    assert errors == ["services.${SET}.command[1]: variable A is not set: give A"]


def test_dotenv_lines_quotes_comments_and_references() -> None:
    text = (
        "# a comment\n"
        "\n"
        "TAG=1.4.2\n"
        "export REGISTRY=registry.example:5000  # where the images are\n"
        "IMAGE=${REGISTRY}/shop:${TAG}\n"
        "QUOTED='single $TAG # kept'\n"
        'DOUBLE="line\\none ${TAG}"\n'
        "FROM_PROCESS=${HOME_DIR:-/root}\n"
        "EMPTY=\n"
    )
    assert parse_dotenv(text, {"HOME_DIR": "/home/me"}) == {
        "TAG": "1.4.2",
        "REGISTRY": "registry.example:5000",
        "IMAGE": "registry.example:5000/shop:1.4.2",
        "QUOTED": "single $TAG # kept",
        "DOUBLE": "line\none 1.4.2",
        "FROM_PROCESS": "/home/me",
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("GOOD=1\nthis is not a line\n", 'line 2: expected NAME=value, got "this is not a line"'),
        ("A='unclosed\n", "line 1: A: the single quote is not closed"),
        ('A="unclosed\n', "line 1: A: the double quote is not closed"),
        ("A=${B:?B is needed}\n", "line 1: A: variable B is not set: B is needed"),
    ],
)
def test_a_bad_dotenv_line_is_named(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_dotenv(text, {})
    assert str(caught.value) == message
