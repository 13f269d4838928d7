"""No application can take a site down: every ${NAME} is checked where it is written, what a
spec may ask for is limited, control characters are refused, and an instance that cannot be
computed anyway fails alone."""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any

import pytest

from enforcer.reconcile.instances import Context, InstanceError, desired_instance
from enforcer.shared.spec import SpecError, parse_application
from enforcer.shared.spec import limits as spec_limits
from enforcer.shared.spec.model import Variable

BASE: dict[str, Any] = {
    "name": "app",
    "version": "1",
    "services": [{"name": "web", "containers": [{"name": "main", "image": "busybox"}]}],
}


def doc(**service: Any) -> dict[str, Any]:
    """A minimal valid spec whose one service has `service`'s fields (container: fields of
    its one container)."""
    document = copy.deepcopy(BASE)
    container = service.pop("container", {})
    document["services"][0].update(service)
    document["services"][0]["containers"][0].update(container)
    return document


def errors(document: Any) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_application(document)
    return [str(e) for e in caught.value.errors]


# -- references --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ({"container": {"env": {"A": "x${NOPE}"}}}, "services[0].containers[0].env.A"),
        ({"container": {"cmd": ["sh", "${NOPE}"]}}, "services[0].containers[0].cmd[1]"),
        ({"container": {"entrypoint": ["${NOPE}"]}}, "services[0].containers[0].entrypoint[0]"),
        (
            {
                "volumes": [{"name": "conf", "config-map": {"items": [
                    {"name": "a.conf", "data": "host=${NOPE}\n"}]}}],
            },
            "services[0].volumes[0].config-map.items[0].data",
        ),
        ({"variables": [{"name": "A", "value": "${NOPE}"}]}, "services[0].variables[0].value"),
    ],
)
def test_an_undefined_reference_is_refused_where_it_is_written(
    service: dict[str, Any], path: str
) -> None:
    assert any(
        e.startswith(f"{path}: undefined variable ${{NOPE}}") for e in errors(doc(**service))
    )


def test_a_variable_can_use_only_system_variables_and_the_variables_above_it() -> None:
    document = doc(
        variables=[
            {"name": "A", "value": "${SYS_HOST}-${B}"},
            {"name": "B", "value": "${SYS_INSTANCE}"},
            {"name": "C", "value": "${A}/${B}"},
        ]
    )
    assert errors(document) == [
        "services[0].variables[0].value: ${B} is defined below this variable: a variable's "
        "value can use only the system variables and the variables above it"
    ]


def test_system_variables_are_known_in_every_place_that_expands() -> None:
    every = "${SYS_SITE}${SYS_HOST}${SYS_TENANT}${SYS_APP}${SYS_SERVICE}${SYS_INSTANCE}"
    document = doc(
        variables=[{"name": "A", "value": every}],
        volumes=[{"name": "c", "config-map": {"items": [{"name": "f", "data": every}]}}],
        container={"env": {"E": every + "${A}"}, "cmd": [every], "entrypoint": [every]},
    )
    assert parse_application(document).services[0].variables[0].value == every


def test_a_value_that_doubles_itself_is_refused_before_it_can_grow() -> None:
    variables = [{"name": "V0", "value": "x" * 64}]
    variables += [{"name": f"V{n}", "value": f"${{V{n - 1}}}${{V{n - 1}}}"} for n in range(1, 40)]
    started = time.monotonic()
    found = errors(doc(variables=variables, container={"env": {"E": "${V39}"}}))
    assert time.monotonic() - started < 1
    limit = spec_limits.MAX_VALUE_LENGTH
    assert found[0] == (
        f"services[0].variables[12].value: can be {64 * 2**12} characters long once its "
        f"variables are expanded; at most {limit} are allowed"
    )
    assert any(e.startswith("services[0].containers[0].env.E: can be ") for e in found)


# -- limits ------------------------------------------------------------------------------


def test_a_hundred_thousand_replicas_are_refused_at_once_with_the_limit() -> None:
    started = time.monotonic()
    found = errors(doc(replicas=100_000))
    assert time.monotonic() - started < 0.5
    assert found == ["services[0].replicas: must be at most 1000, got 100000"]
    assert parse_application(doc(replicas=1000)).services[0].replicas == 1000


@pytest.mark.parametrize(
    ("field", "make", "limit", "path"),
    [
        ("containers", lambda n: {"name": f"c{n}", "image": "busybox"},
         spec_limits.MAX_CONTAINERS, "services[0].containers"),
        ("variables", lambda n: {"name": f"V{n}", "value": "x"},
         spec_limits.MAX_VARIABLES, "services[0].variables"),
        ("volumes", lambda n: {"name": f"v{n}", "ephemeral": {}},
         spec_limits.MAX_VOLUMES, "services[0].volumes"),
    ],
)  # fmt: skip
def test_too_many_entries_are_refused_with_the_path_and_the_limit(
    field: str, make: Any, limit: int, path: str
) -> None:
    assert parse_application(doc(**{field: [make(n) for n in range(limit)]}))
    found = errors(doc(**{field: [make(n) for n in range(limit + 1)]}))
    assert found == [f"{path}: has {limit + 1} entries; at most {limit} are allowed"]


def test_too_many_services_are_refused_with_the_limit() -> None:
    document = copy.deepcopy(BASE)
    service = document["services"][0]
    limit = spec_limits.MAX_SERVICES
    document["services"] = [{**service, "name": f"s{n}"} for n in range(limit + 1)]
    assert errors(document) == [f"services: has {limit + 1} entries; at most {limit} are allowed"]


def test_long_names_and_image_references_are_refused_with_the_limit() -> None:
    limit = spec_limits.MAX_IMAGE_LENGTH
    found = errors(
        doc(
            name="s" * 64,
            variables=[{"name": "V" * 129, "value": "x"}],
            container={"image": "registry.example/" + "a" * limit},
        )
    )
    assert found == [
        'services[0].name: "' + "s" * 64 + '" is not a valid name: use at most 63 lower-case '
        'letters, digits and "-", starting and ending with a letter or digit',
        "services[0].variables[0].name: is 129 characters long; at most 128 are allowed",
        f"services[0].containers[0].image: is {limit + 17} characters long; at most {limit} "
        "are allowed",
    ]


def test_secrets_count_in_the_length_check_without_refusing_ordinary_uses() -> None:
    secret = {"vault": "v", "secret": "db"}
    variables: list[dict[str, Any]] = [
        {"name": "USER", "value-from-secret": {**secret, "key": "user"}},
        {"name": "PASS", "value-from-secret": {**secret, "key": "password"}},
        {"name": "URL", "value": "postgres://${USER}:${PASS}@db/app"},
    ]
    assert parse_application(doc(variables=variables, container={"env": {"DB": "${URL}"}}))
    doubled = [{"name": "S0", "value-from-secret": {**secret, "key": "k"}}]
    doubled += [{"name": f"S{n}", "value": f"${{S{n - 1}}}${{S{n - 1}}}"} for n in range(1, 9)]
    assert errors(doc(variables=doubled))[0].startswith(
        f"services[0].variables[6].value: can be {spec_limits.SECRET_VALUE_LENGTH * 2**6} "
    )


# -- control characters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "path", "what"),
    [
        ({"name": "web\0"}, "services[0].name", "a control character (U+0000 at offset 3)"),
        ({"container": {"image": "busy\x85box"}}, "services[0].containers[0].image",
         "a control character (U+0085 at offset 4)"),
        ({"container": {"env": {"A": "safe\u202eexe.txt"}}}, "services[0].containers[0].env.A",
         "a bidirectional override (U+202E at offset 4)"),
        ({"container": {"cmd": ["echo", "\u2066x"]}}, "services[0].containers[0].cmd[1]",
         "a bidirectional override (U+2066 at offset 0)"),
        ({"variables": [{"name": "A", "value": "a\x1bb"}]}, "services[0].variables[0].value",
         "a control character (U+001B at offset 1)"),
        ({"container": {"name": "ma\tin"}}, "services[0].containers[0].name",
         "a tab (U+0009 at offset 2)"),
        ({"placement": {"devices": ["cam\nera"]}}, "services[0].placement.devices[0]",
         "a line break (U+000A at offset 3)"),
    ],
)  # fmt: skip
def test_control_characters_are_refused_in_names_and_values(
    service: dict[str, Any], path: str, what: str
) -> None:
    assert errors(doc(**service)) == [f"{path}: contains {what}; it is not allowed here"]


def test_multi_line_values_keep_tabs_and_line_breaks() -> None:
    text = "line 1\n\tline 2\r\n"
    app = parse_application(
        doc(
            variables=[{"name": "A", "value": text}],
            volumes=[{"name": "c", "config-map": {"items": [{"name": "f", "data": text}]}}],
            container={"env": {"E": text}, "cmd": ["sh", "-c", text]},
        )
    )
    assert app.services[0].containers[0].env == (("E", text),)


def test_a_control_character_in_an_env_name_or_a_key_is_refused_and_shown_escaped() -> None:
    found = errors(doc(container={"env": {"A\u202e": "x"}}, **{"bad\x1b": 1}))
    assert found == [
        'services[0]["bad\\u001b"]: unknown field',
        'services[0].containers[0].env["A\\u202e"]: is not a valid environment variable name '
        '(empty, has "=" or a control character)',
    ]


# -- the name ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, 5, ["app"]])
def test_a_missing_or_non_string_name_is_reported_with_every_other_error(name: Any) -> None:
    document = doc(replicas=-1, container={"image": ""})
    if name is None:
        del document["name"]
    else:
        document["name"] = name
    found = errors(document)
    assert found[0].startswith("name: ")
    assert found[1:] == [
        "services[0].replicas: must be at least 0, got -1",
        "services[0].containers[0].image: must not be empty",
    ]


# -- one instance fails alone ------------------------------------------------------------


def test_an_instance_that_cannot_be_computed_fails_alone_with_its_reason() -> None:
    app = parse_application(doc(variables=[{"name": "A", "value": "fine"}], replicas=2))
    service = app.services[0]
    # a stored application that an older validator let through
    broken = replace(service, variables=(Variable("A", "${GONE}"),))
    ctx = Context(site="s", host="h")
    with pytest.raises(InstanceError) as caught:
        desired_instance(app, broken, "app.web.0", ctx, instances_dir="/tmp/i")
    assert caught.value.instance == "app.web.0"
    assert caught.value.reason == "variables.A: undefined variable ${GONE}"
    ok = desired_instance(app, service, "app.web.1", ctx, instances_dir="/tmp/i")
    assert ok.id == "app.web.1"


def test_a_mount_of_a_volume_that_is_not_there_fails_only_its_instance() -> None:
    app = parse_application(
        doc(
            volumes=[{"name": "data", "ephemeral": {}}],
            container={"mounts": [{"volume": "data", "path": "/data"}]},
        )
    )
    broken = replace(app.services[0], volumes=())
    with pytest.raises(InstanceError) as caught:
        desired_instance(app, broken, "app.web.0", Context("s", "h"), instances_dir="/tmp/i")
    assert caught.value.reason == "KeyError: 'data'"
