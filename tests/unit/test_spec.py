"""Application specs: reading, validation with paths, defaults, and the canonical document."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.shared.spec import (
    MAX_SPEC_BYTES,
    SYSTEM_VARIABLES,
    Application,
    ConfigItem,
    Container,
    ExecProbe,
    FieldError,
    HttpProbe,
    Ingress,
    Mode,
    Mount,
    Network,
    Outbound,
    Placement,
    Priority,
    Probe,
    Probes,
    Resources,
    RestartPolicy,
    SecretRef,
    Service,
    SpecError,
    TcpProbe,
    Variable,
    Volume,
    VolumeKind,
    application_to_document,
    load_application,
    parse_application,
)
from enforcer.shared.spec.variables import expand, references

FULL_SPEC = Path(__file__).resolve().parents[2] / "examples" / "full-spec.yaml"
MISSING = object()  # a field to remove from the minimal spec


def spec(*, service: dict[str, Any] | None = None, container: dict[str, Any] | None = None,
         **top: Any) -> dict[str, Any]:  # fmt: skip
    """A minimal valid spec document with some fields replaced (or removed with MISSING)."""
    document: dict[str, Any] = {
        "name": "app",
        "version": "1",
        "services": [{"name": "web", "containers": [{"name": "main", "image": "busybox"}]}],
    }
    for target, changes in (
        (document, top),
        (document["services"][0], service or {}),
        (document["services"][0]["containers"][0], container or {}),
    ):
        for key, value in changes.items():
            if value is MISSING:
                target.pop(key, None)
            else:
                target[key] = value
    return document


def errors_of(document: object) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_application(document)
    return [str(error) for error in caught.value.errors]


# -- the example and defaults ----------------------------------------------------------------


def test_the_full_example_of_the_design_parses_to_the_expected_model() -> None:
    app = load_application(FULL_SPEC.read_text())
    service = app.service("detector")
    (container,) = service.containers
    assert (app.name, app.version, app.tenant) == ("vision", "1.2.0", "system")
    assert (service.mode, service.replicas, service.priority) == (
        Mode.REPLICATED,
        1,
        Priority.NORMAL,
    )
    assert service.placement == Placement("zone = line-1 and not maintenance", ("camera",), 1)
    assert service.resources == Resources(cpus=0.5, memory=256 * 1024**2)
    assert service.variables == (
        Variable("THRESHOLD", value="0.8"),
        Variable("API_KEY", value_from_secret=SecretRef("vision", "creds", "api-key")),
    )
    assert service.volume("conf").items == (ConfigItem("app.conf", "threshold=${THRESHOLD}\n"),)
    assert service.volume("creds") == Volume(
        "creds", VolumeKind.SECRET, secret=SecretRef("vision", "creds")
    )
    assert service.volume("scratch").kind is VolumeKind.EPHEMERAL
    assert service.volume("data").kind is VolumeKind.PERSISTENT
    assert service.network == Network((Ingress(8080, 18080, "tcp"),), Outbound.DENY)
    assert container.image == "registry.example:5000/vision/detector:1.2"
    assert container.cmd == ("/bin/detector", "--threshold", "${THRESHOLD}")
    assert container.entrypoint is None
    assert container.env == (("API_KEY", "${API_KEY}"), ("LOG_LEVEL", "info"))
    assert container.mounts == (
        Mount("conf", "/etc/detector"),
        Mount("creds", "/run/secrets/creds"),
    )
    assert container.probes == Probes(
        liveness=Probe(ExecProbe(("/bin/check",)), period=10.0, timeout=2.0, failure_threshold=3),
        readiness=Probe(HttpProbe(8080, "/healthz")),
        startup=Probe(TcpProbe(8080), period=1.0, failure_threshold=60),
    )
    assert (container.restart, container.stop_timeout) == (RestartPolicy.ALWAYS, 10.0)


def test_the_full_example_reads_the_same_from_bytes_and_from_json() -> None:
    app = load_application(FULL_SPEC.read_bytes())
    as_json = json.dumps(yaml.safe_load(FULL_SPEC.read_text()))
    assert load_application(as_json) == app
    assert load_application(as_json.encode()) == app


def test_a_minimal_spec_gets_the_documented_defaults() -> None:
    app = parse_application(spec())
    assert app == Application(
        "app", "1", (Service("web", (Container("main", "busybox"),)),), tenant="system"
    )
    service = app.services[0]
    assert (service.mode, service.replicas, service.priority) == (
        Mode.REPLICATED,
        1,
        Priority.NORMAL,
    )
    assert service.placement == Placement("", (), 0)
    assert service.network.outbound is Outbound.DENY
    container = service.containers[0]
    assert (container.cmd, container.entrypoint, container.restart) == (
        None,
        None,
        RestartPolicy.ALWAYS,
    )
    assert container.stop_timeout is None  # the host's [runtime] stop-grace applies


def test_the_tenant_is_set_by_the_caller_not_the_spec() -> None:
    assert parse_application(spec(), tenant="acme").tenant == "acme"
    assert "services[0].tenant: unknown field" in errors_of(spec(service={"tenant": "x"}))
    assert "tenant: unknown field" in errors_of(spec(tenant="acme"))


def test_optional_fields_given_as_null_take_their_defaults() -> None:
    document = spec(
        service={"placement": None, "variables": None, "volumes": None, "network": None},
        container={"cmd": None, "entrypoint": None, "env": None, "probes": None},
    )
    assert parse_application(document) == parse_application(spec())


def test_entrypoint_can_be_cleared_with_an_empty_list() -> None:
    container = parse_application(spec(container={"entrypoint": []})).services[0].containers[0]
    assert container.entrypoint == ()


def test_yaml_anchors_and_merge_keys_can_share_settings() -> None:
    text = """
name: app
version: "1"
services:
  - name: web
    containers:
      - &base {name: one, image: busybox, env: {A: b}}
      - <<: *base
        name: two
"""
    containers = load_application(text).services[0].containers
    assert [(c.name, c.image, c.env) for c in containers] == [
        ("one", "busybox", (("A", "b"),)),
        ("two", "busybox", (("A", "b"),)),
    ]


def test_one_per_matching_host_services_keep_the_default_replica_count() -> None:
    service = parse_application(spec(service={"mode": "one-per-matching-host"})).services[0]
    assert (service.mode, service.replicas) == (Mode.ONE_PER_MATCHING_HOST, 1)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("priority", "critical", Priority.CRITICAL),
        ("priority", "low", Priority.LOW),
        ("replicas", 0, 0),
        ("replicas", 7, 7),
    ],
)
def test_service_settings_are_read(field: str, value: object, expected: object) -> None:
    service = parse_application(spec(service={field: value})).services[0]
    assert getattr(service, field) == expected


def test_ingress_host_port_defaults_to_the_container_port() -> None:
    network = parse_application(
        spec(service={"network": {"ingress": [{"port": 53, "protocol": "udp"}]}})
    )
    assert network.services[0].network.ingress == (Ingress(53, 53, "udp"),)


# -- errors ----------------------------------------------------------------------------------


def test_unknown_field_is_reported_with_its_path() -> None:
    assert errors_of(spec(container={"imagee": "x"})) == [
        'services[0].containers[0].imagee: unknown field (did you mean "image"?)'
    ]


def test_a_probe_period_without_unit_is_reported_like_the_design_says() -> None:
    document = spec()
    document["services"][0]["containers"].append(
        {
            "name": "side",
            "image": "busybox",
            "probes": {"liveness": {"tcp": {"port": 1}, "period": "10x"}},
        }
    )
    (error,) = errors_of(document)
    assert error.startswith(
        'services[0].containers[1].probes.liveness.period: "10x" is not a duration'
    )


S = "services[0]"
C = "services[0].containers[0]"


def _assert_reported(document: object, path: str, message: str) -> None:
    errors = errors_of(document)
    assert any(e.startswith(f"{path}: ") and message in e for e in errors), errors


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        (spec(name=MISSING), "name", "required field is missing"),
        (spec(version=MISSING), "version", "required field is missing"),
        (spec(services=MISSING), "services", "required field is missing"),
        (spec(services=[]), "services", "at least one service is required"),
        (spec(services={"web": {}}), "services", "expected a list, got a mapping"),
        (spec(service={"name": MISSING}), f"{S}.name", "required field is missing"),
        (spec(service={"containers": MISSING}), f"{S}.containers", "required field is missing"),
        (spec(service={"containers": []}), f"{S}.containers", "at least one container"),
        (spec(container={"name": MISSING}), f"{C}.name", "required field is missing"),
        (spec(container={"image": MISSING}), f"{C}.image", "required field is missing"),
        (spec(container={"image": None}), f"{C}.image", "expected a string, got null"),
        (spec(container={"image": "a b"}), f"{C}.image", "contains spaces"),
        (spec(name="Vision"), "name", '"Vision" is not a valid name'),
        (spec(name="-app"), "name", "is not a valid name"),
        (spec(name="app-"), "name", "is not a valid name"),
        (spec(name="a" * 64), "name", "is not a valid name"),
        (spec(name="my_app"), "name", "is not a valid name"),
        (spec(service={"name": "Web"}), f"{S}.name", "is not a valid name"),
        (spec(container={"name": "a.b"}), f"{C}.name", "is not a valid name"),
        (spec(version=1.2), "version", "expected a string, got a number (1.2); put it in quotes"),
        (spec(version=3), "version", "put it in quotes"),
        (spec(version=""), "version", "must not be empty"),
        (spec(version="x" * 129), "version", "longer than 128"),
    ],
)
def test_missing_fields_and_bad_names_are_reported(
    document: object, path: str, message: str
) -> None:
    _assert_reported(document, path, message)


ONE_PER_HOST = {"mode": "one-per-matching-host", "replicas": 2}


@pytest.mark.parametrize(
    ("service", "path", "message"),
    [
        ({"replicas": -1}, "replicas", "must be at least 0, got -1"),
        ({"replicas": "2"}, "replicas", "expected a whole number"),
        ({"replicas": True}, "replicas", "expected a whole number"),
        ({"replicas": 1.5}, "replicas", "expected a whole number"),
        (ONE_PER_HOST, "replicas", 'cannot be set with mode "one-per-matching-host"'),
        ({"mode": "global"}, "mode", '"global" is not one of: replicated, one-per-matching-host'),
        ({"priority": "urgent"}, "priority", "is not one of: low, normal, high, critical"),
        ({"priority": 3}, "priority", "a number (3) is not one of"),
        ({"placement": []}, "placement", "expected a mapping, got a list"),
        ({"placement": {"gpus": -1}}, "placement.gpus", "must be at least 0"),
        ({"placement": {"devices": "camera"}}, "placement.devices", "expected a list"),
        ({"placement": {"devices": ["a b"]}}, "placement.devices[0]", "not a device label"),
        (
            {"placement": {"devices": ["cam", "cam"]}},
            "placement.devices[1]",
            'duplicate device "cam"',
        ),
        (
            {"placement": {"match-host-labels": "zone = line-1 and x ="}},
            "placement.match-host-labels",
            'column 22: expected a value after "="',
        ),
        ({"resources": {"cpus": 0}}, "resources.cpus", "must be more than 0"),
        ({"resources": {"cpus": -1.5}}, "resources.cpus", "must be more than 0"),
        ({"resources": {"cpus": float("inf")}}, "resources.cpus", "must be more than 0"),
        ({"resources": {"cpus": "1"}}, "resources.cpus", "expected a number"),
        ({"resources": {"memory": "256M"}}, "resources.memory", '"256M" is not a size'),
        ({"resources": {"memory": 256}}, "resources.memory", "must be at least 6Mi"),
        ({"resources": {"memory": "-1Mi"}}, "resources.memory", "is not a size"),
        ({"network": {"ingress": [{"port": 0}]}}, "network.ingress[0].port", "between 1 and 65535"),
        (
            {"network": {"ingress": [{"port": 1, "host-port": 65536}]}},
            "network.ingress[0].host-port",
            "between 1 and 65535",
        ),
        (
            {"network": {"ingress": [{"port": 1, "protocol": "sctp"}]}},
            "network.ingress[0].protocol",
            '"sctp" is not one of: tcp, udp',
        ),
        (
            {"network": {"ingress": [{"host-port": 80}]}},
            "network.ingress[0].port",
            "required field is missing",
        ),
        (
            {
                "network": {
                    "ingress": [{"port": 80, "host-port": 8080}, {"port": 81, "host-port": 8080}]
                }
            },
            "network.ingress[1].host-port",
            "duplicate host-port 8080/tcp (first at services[0].network.ingress[0].host-port)",
        ),
        ({"network": {"outbound": "maybe"}}, "network.outbound", "is not one of: deny, allow"),
        ({"network": {"outbound": False}}, "network.outbound", "a boolean (false) is not one of"),
    ],
)
def test_service_mistakes_are_reported_at_their_path(
    service: dict[str, Any], path: str, message: str
) -> None:
    _assert_reported(spec(service=service), f"{S}.{path}", message)


SECRET = {"vault": "v", "secret": "s", "key": "k"}


def _config_map(*items: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "c", "config-map": {"items": list(items)}}]


@pytest.mark.parametrize(
    ("service", "path", "message"),
    [
        (
            {"variables": [{"name": "A"}]},
            "variables[0]",
            'exactly one of "value" and "value-from-secret"',
        ),
        (
            {"variables": [{"name": "A", "value": "x", "value-from-secret": SECRET}]},
            "variables[0]",
            "exactly one of",
        ),
        (
            {"variables": [{"name": "1A", "value": "x"}]},
            "variables[0].name",
            "not a valid variable name",
        ),
        ({"variables": [{"name": "SYS_SITE", "value": "x"}]}, "variables[0].name", "reserved"),
        ({"variables": [{"name": "A", "value": 1}]}, "variables[0].value", "put it in quotes"),
        (
            {"variables": [{"name": "A", "value": "x"}, {"name": "A", "value": "y"}]},
            "variables[1].name",
            'duplicate variable name "A" (first at services[0].variables[0].name)',
        ),
        (
            {"variables": [{"name": "A", "value-from-secret": {"vault": "v", "secret": "s"}}]},
            "variables[0].value-from-secret.key",
            "required field is missing",
        ),
        (
            {"variables": [{"name": "A", "value-from-secret": {"secret": "s", "key": "k"}}]},
            "variables[0].value-from-secret.vault",
            "required field is missing",
        ),
        (
            {"volumes": [{"name": "s", "secret": {"vault": "v"}}]},
            "volumes[0].secret.secret",
            "required field is missing",
        ),
        (
            {"volumes": [{"name": "s", "secret": None}]},
            "volumes[0].secret",
            "expected a mapping, got null",
        ),
        (
            {"volumes": [{"name": "v"}]},
            "volumes[0]",
            "exactly one of: config-map, secret, ephemeral, persistent",
        ),
        (
            {"volumes": [{"name": "v", "ephemeral": {}, "persistent": {}}]},
            "volumes[0]",
            "exactly one of",
        ),
        (
            {"volumes": [{"name": "v", "ephemeral": {"size": 1}}]},
            "volumes[0].ephemeral.size",
            "unknown field",
        ),
        ({"volumes": [{"name": "V_1", "ephemeral": {}}]}, "volumes[0].name", "is not a valid name"),
        (
            {"volumes": [{"name": "v", "ephemeral": {}}, {"name": "v", "persistent": {}}]},
            "volumes[1].name",
            'duplicate volume name "v"',
        ),
        (
            {"volumes": _config_map({"name": "a", "data": ""}, {"name": "a", "data": ""})},
            "volumes[0].config-map.items[1].name",
            'duplicate file name "a"',
        ),
        (
            {"volumes": _config_map({"name": "etc/a", "data": ""})},
            "volumes[0].config-map.items[0].name",
            "is not a file name",
        ),
        (
            {"volumes": _config_map({"name": "..", "data": ""})},
            "volumes[0].config-map.items[0].name",
            "is not a file name",
        ),
        (
            {"volumes": _config_map({"name": ".", "data": ""})},
            "volumes[0].config-map.items[0].name",
            "is not a file name",
        ),
        (
            {"volumes": _config_map({"name": "a"})},
            "volumes[0].config-map.items[0].data",
            "required field is missing",
        ),
    ],
)
def test_variable_and_volume_mistakes_are_reported_at_their_path(
    service: dict[str, Any], path: str, message: str
) -> None:
    _assert_reported(spec(service=service), f"{S}.{path}", message)


def _probe(**fields: Any) -> dict[str, Any]:
    return {"probes": {"liveness": fields}}


TCP = {"port": 1}


@pytest.mark.parametrize(
    ("container", "path", "message"),
    [
        ({"cmd": "/bin/sh -c x"}, "cmd", "expected a list of strings or null"),
        ({"entrypoint": ["/bin/sh", 1]}, "entrypoint[1]", "expected a string"),
        ({"env": ["A=b"]}, "env", "expected a mapping"),
        ({"env": {"PORT": 8080}}, "env.PORT", "got a number (8080); put it in quotes"),
        ({"env": {"DEBUG": True}}, "env.DEBUG", "put it in quotes"),
        ({"env": {"A=B": "x"}}, 'env["A=B"]', "not a valid environment variable name"),
        (
            {"mounts": [{"volume": "nope", "path": "/x"}]},
            "mounts[0].volume",
            'volume "nope" is not defined',
        ),
        ({"restart": "sometimes"}, "restart", "is not one of: always, on-failure, never"),
        ({"stop-timeout": 10}, "stop-timeout", '10 is not a duration: add a unit, e.g. "10s"'),
        ({"stop-timeout": "10"}, "stop-timeout", 'add a unit, e.g. "10s"'),
        ({"probes": {"readyness": {"tcp": TCP}}}, "probes.readyness", 'did you mean "readiness"'),
        (_probe(period="1s"), "probes.liveness", "exactly one of: exec, http, tcp"),
        (
            _probe(exec=["x"], tcp=TCP),
            "probes.liveness",
            "exactly one of: exec, http, tcp (found exec and tcp)",
        ),
        (_probe(exec=[]), "probes.liveness.exec", "must not be empty"),
        (
            _probe(tcp=TCP, **{"failure-threshold": 0}),
            "probes.liveness.failure-threshold",
            "at least 1",
        ),
        (_probe(tcp=TCP, period="0s"), "probes.liveness.period", "longer than 0s"),
        (_probe(tcp=TCP, timeout="1"), "probes.liveness.timeout", "is not a duration"),
        (
            _probe(tcp=TCP, **{"initial-delay": "soon"}),
            "probes.liveness.initial-delay",
            "is not a duration",
        ),
        (_probe(tcp={}), "probes.liveness.tcp.port", "required field is missing"),
        (_probe(http={"port": 99999}), "probes.liveness.http.port", "between 1 and 65535"),
        (
            _probe(http={"port": 80, "path": "healthz"}),
            "probes.liveness.http.path",
            'must start with "/"',
        ),
    ],
)
def test_container_mistakes_are_reported_at_their_path(
    container: dict[str, Any], path: str, message: str
) -> None:
    _assert_reported(spec(container=container), f"{C}.{path}", message)


@pytest.mark.parametrize(
    ("mounts", "path", "message"),
    [
        ([{"volume": "v", "path": "data"}], "mounts[0].path", '"data" is not an absolute path'),
        ([{"volume": "v", "path": "/a/../b"}], "mounts[0].path", 'must not contain ".."'),
        ([{"volume": "v", "path": "/"}], "mounts[0].path", 'cannot mount over "/"'),
        (
            [{"volume": "v", "path": "/a"}, {"volume": "v", "path": "/a/"}],
            "mounts[1].path",
            'duplicate mount path "/a/"',
        ),
        (
            [{"volume": "v", "path": "/a", "read-only": "yes"}],
            "mounts[0].read-only",
            "expected true or false",
        ),
        ([{"volume": "v"}], "mounts[0].path", "required field is missing"),
    ],
)
def test_mount_mistakes_are_reported(mounts: object, path: str, message: str) -> None:
    volumes = [{"name": "v", "ephemeral": {}}]
    document = spec(service={"volumes": volumes}, container={"mounts": mounts})
    _assert_reported(document, f"{C}.{path}", message)


def test_duplicate_service_and_container_names_are_reported() -> None:
    document = spec()
    document["services"].append(copy.deepcopy(document["services"][0]))
    document["services"][1]["containers"].append({"name": "main", "image": "x"})
    assert errors_of(document) == [
        'services[1].containers[1].name: duplicate container name "main" '
        "(first at services[1].containers[0].name)",
        'services[1].name: duplicate service name "web" (first at services[0].name)',
    ]


@pytest.mark.parametrize(
    ("where", "changes"),
    [
        ("services[0].containers[0].cmd[1]", {"container": {"cmd": ["/bin/x", "${NOPE}"]}}),
        ("services[0].containers[0].entrypoint[0]", {"container": {"entrypoint": ["${NOPE}"]}}),
        ("services[0].containers[0].env.A", {"container": {"env": {"A": "x-${NOPE}-y"}}}),
        (
            "services[0].volumes[0].config-map.items[0].data",
            {
                "service": {
                    "volumes": [
                        {"name": "c", "config-map": {"items": [{"name": "f", "data": "${NOPE}"}]}}
                    ]
                }
            },
        ),
    ],
)
def test_undefined_variables_are_reported_where_they_are_used(
    where: str, changes: dict[str, Any]
) -> None:
    errors = errors_of(spec(**changes))
    assert len(errors) == 1
    assert errors[0].startswith(f"{where}: undefined variable ${{NOPE}}")


def test_variables_of_the_service_and_system_variables_may_be_used() -> None:
    used = " ".join(f"${{{name}}}" for name in (*SYSTEM_VARIABLES, "MINE"))
    document = spec(
        service={"variables": [{"name": "MINE", "value": "1"}]},
        container={"cmd": [used, "$$HOME", "$PATH"], "env": {"A": used}},
    )
    assert parse_application(document).services[0].containers[0].cmd == (used, "$$HOME", "$PATH")


def test_variables_of_another_service_are_not_visible() -> None:
    document = spec(service={"variables": [{"name": "MINE", "value": "1"}]})
    document["services"].append(
        {"name": "other", "containers": [{"name": "main", "image": "x", "env": {"A": "${MINE}"}}]}
    )
    assert [e.split(":")[0] for e in errors_of(document)] == ["services[1].containers[0].env.A"]


def test_a_malformed_reference_is_reported() -> None:
    (error,) = errors_of(spec(container={"env": {"A": "${unclosed"}}))
    assert error.startswith('services[0].containers[0].env.A: "${" at offset 0 is not closed')


def test_a_spec_with_several_mistakes_reports_all_of_them() -> None:
    text = """
name: Vision
version: 1.2
colour: blue
services:
  - name: detector
    replicas: -1
    placement: {match-host-labels: "zone = line-1 and x ="}
    containers:
      - name: main
        env: {A: "${NOPE}"}
        probes:
          liveness: {exec: [/bin/check], period: 10x}
"""
    with pytest.raises(SpecError) as caught:
        load_application(text)
    expected = [
        "colour: unknown field",
        'name: "Vision" is not a valid name',
        "version: expected a string, got a number (1.2); put it in quotes",
        "services[0].replicas: must be at least 0, got -1",
        'services[0].placement.match-host-labels: column 22: expected a value after "="',
        "services[0].containers[0].image: required field is missing",
        "services[0].containers[0].env.A: undefined variable ${NOPE}",
        'services[0].containers[0].probes.liveness.period: "10x" is not a duration',
    ]
    lines = str(caught.value).splitlines()
    assert len(lines) == len(expected) == len(caught.value.errors)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)
    assert all(isinstance(error, FieldError) for error in caught.value.errors)


def test_a_spec_error_is_a_value_error_listing_one_problem_per_line() -> None:
    error = SpecError([FieldError("a.b", "bad"), FieldError("", "whole thing")])
    assert isinstance(error, ValueError)
    assert str(error) == "a.b: bad\nwhole thing"


def test_a_very_long_error_list_is_shortened_in_the_message_but_kept_whole() -> None:
    error = SpecError([FieldError(f"x[{i}]", "bad") for i in range(250)])
    assert len(error.errors) == 250
    assert str(error).splitlines()[-1] == "... and 150 more errors"


# -- reading text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the spec is empty"),
        ("# nothing\n", "the spec is empty"),
        ("- a\n- b\n", "the spec must be a mapping, got a list"),
        ("just text", 'the spec must be a mapping, got a string ("just text")'),
        ("name: [a\n", "YAML syntax error at line 2, column 1: "),
        ("name: a\n  version: 1\n", "YAML syntax error at line 2, column 10"),
        ("name: a\n---\nname: b\n", "line 2: the spec must be a single YAML document"),
        ("name: a\nname: b\n", 'line 2, column 1: the key "name" is given twice'),
        ('{"name": "a", "name": "b"}', 'the key "name" is given twice'),
        ("a: *nope\n", "YAML syntax error at line 1, column 4"),
        ("name: !!python/object:os.system x\n", "YAML syntax error"),
    ],
)
def test_text_that_is_not_a_spec_document_is_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_application(text)
    (error,) = caught.value.errors
    assert error.path == ""
    assert message in error.message, error.message


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(SpecError, match="not UTF-8 text"):
        load_application(b"name: \xff\n")


def test_a_spec_over_the_size_limit_is_refused_before_parsing() -> None:
    text = "name: app\n" + "#" * MAX_SPEC_BYTES
    with pytest.raises(SpecError, match="at most 1048576"):
        load_application(text)


def test_a_yaml_alias_bomb_is_refused_as_too_large() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 8):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]")
    with pytest.raises(SpecError, match="too large"):
        load_application("\n".join(lines))


def test_deeply_nested_yaml_is_refused_without_overflowing_the_stack() -> None:
    with pytest.raises(SpecError) as caught:
        load_application("name: " + "[" * 100_000)
    (error,) = caught.value.errors
    assert "nested more than 64 levels deep" in error.message


# -- the canonical document --------------------------------------------------------------------


def test_the_canonical_document_of_the_full_example_parses_back_to_it() -> None:
    app = load_application(FULL_SPEC.read_text(), tenant="acme")
    document = application_to_document(app)
    assert parse_application(document, tenant="acme") == app
    assert parse_application(json.loads(json.dumps(document)), tenant="acme") == app
    assert load_application(yaml.safe_dump(document), tenant="acme") == app
    assert application_to_document(parse_application(document)) == document


def test_the_canonical_document_spells_out_every_setting() -> None:
    document = application_to_document(parse_application(spec()))
    service = document["services"][0]
    assert service["replicas"] == 1 and service["priority"] == "normal"
    assert service["network"] == {"ingress": [], "outbound": "deny"}
    # but stop-timeout, which falls back to the host's [runtime] stop-grace when left out
    assert "stop-timeout" not in document["services"][0]["containers"][0]
    timed = spec()
    timed["services"][0]["containers"][0]["stop-timeout"] = "3s"
    assert application_to_document(parse_application(timed))["services"][0]["containers"][0][
        "stop-timeout"
    ] == "3s"
    host = application_to_document(
        parse_application(spec(service={"mode": "one-per-matching-host"}))
    )
    assert "replicas" not in host["services"][0]


def _random_app(rng: random.Random) -> Application:
    """A random valid application, to check the canonical document round trip."""

    def name(prefix: str, i: int) -> str:
        return f"{prefix}{i}-{rng.choice(['a', 'b1', 'x-y'])}"

    def duration(positive: bool) -> float:
        value = rng.choice([rng.randrange(0, 10**7) / 1000, rng.uniform(0, 1e5), 0.0, 1 / 3])
        return value if value > 0 or not positive else 0.25

    def secret(key: bool) -> SecretRef:
        return SecretRef("vault", name("s", 0), "k" if key or rng.random() < 0.5 else None)

    services = []
    for s in range(rng.randrange(1, 4)):
        variables = tuple(
            Variable(f"V{i}", value=f"v{i}")
            if rng.random() < 0.5
            else Variable(f"V{i}", value_from_secret=secret(True))
            for i in range(rng.randrange(0, 3))
        )
        refs = [f"${{{v.name}}}" for v in variables] + ["${SYS_HOST}", "$$", "plain"]
        # secret-derived variables may appear in env only
        plain = [f"${{{v.name}}}" for v in variables if v.value is not None]
        plain += ["${SYS_HOST}", "$$", "plain"]
        volumes: list[Volume] = []
        for i in range(rng.randrange(0, 4)):
            kind = rng.choice(list(VolumeKind))
            items = tuple(
                ConfigItem(f"f{j}.conf", rng.choice(plain)) for j in range(rng.randrange(0, 3))
            )
            volumes.append(
                Volume(
                    name("vol", i),
                    kind,
                    items=items if kind is VolumeKind.CONFIG_MAP else (),
                    secret=secret(False) if kind is VolumeKind.SECRET else None,
                    restart_on_change=kind is VolumeKind.SECRET and rng.random() < 0.5,
                )
            )
        containers = []
        for c in range(rng.randrange(1, 3)):
            actions: list[ExecProbe | HttpProbe | TcpProbe] = [
                ExecProbe(("/bin/check", rng.choice(refs))),
                HttpProbe(rng.randrange(1, 65536), "/h"),
                TcpProbe(80),
            ]
            probes = [
                Probe(
                    rng.choice(actions),
                    period=duration(True),
                    timeout=duration(True),
                    failure_threshold=rng.randrange(1, 100),
                    initial_delay=duration(False),
                )
                if rng.random() < 0.5
                else None
                for _ in range(3)
            ]
            containers.append(
                Container(
                    name("c", c),
                    "registry.example:5000/img:1",
                    cmd=rng.choice([None, (), ("/bin/x", rng.choice(plain))]),
                    entrypoint=rng.choice([None, (), ("/bin/sh", "-c")]),
                    env=tuple(
                        sorted(
                            {f"E{i}": rng.choice(refs) for i in range(rng.randrange(0, 3))}.items()
                        )
                    ),
                    mounts=tuple(
                        Mount(v.name, f"/mnt/{i}", rng.random() < 0.5)
                        for i, v in enumerate(volumes)
                    ),
                    probes=Probes(*probes),
                    restart=rng.choice(list(RestartPolicy)),
                    stop_timeout=duration(False),
                )
            )
        mode = rng.choice(list(Mode))
        services.append(
            Service(
                name("svc", s),
                tuple(containers),
                mode=mode,
                replicas=rng.randrange(0, 10) if mode is Mode.REPLICATED else 1,
                priority=rng.choice(list(Priority)),
                placement=Placement(
                    rng.choice(["", "zone = a and not b"]),
                    ("camera",) * rng.randrange(0, 2),
                    rng.randrange(0, 3),
                ),
                resources=Resources(
                    rng.choice([0.0, 0.25, rng.uniform(0.01, 64)]),
                    rng.choice([0, 6 * 1024**2, 123456789]),
                ),
                variables=variables,
                volumes=tuple(volumes),
                network=Network(
                    tuple(
                        Ingress(rng.randrange(1, 65536), 10000 + i, rng.choice(["tcp", "udp"]))
                        for i in range(rng.randrange(0, 3))
                    ),
                    rng.choice(list(Outbound)),
                ),
            )
        )
    return Application(
        "app",
        rng.choice(["1", "1.2.0", "2024-01-01"]),
        tuple(services),
        tenant=rng.choice(["system", "acme"]),
    )


def test_random_applications_survive_the_canonical_document_round_trip() -> None:
    rng = random.Random(20240601)
    for round_number in range(200):
        app = _random_app(rng)
        document = json.loads(json.dumps(application_to_document(app)))
        assert parse_application(document, tenant=app.tenant) == app
        if round_number % 10 == 0:  # YAML is slow; a sample is enough
            assert load_application(yaml.safe_dump(document), tenant=app.tenant) == app


# -- ${NAME} references ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names", "expanded"),
    [
        ("plain", set(), "plain"),
        ("${A}", {"A"}, "1"),
        ("x${A}y${B_2}z", {"A", "B_2"}, "x1y2z"),
        ("$${A}", set(), "${A}"),
        ("$$$${A}", set(), "$${A}"),
        ("$$${A}", {"A"}, "$1"),
        ("$A and $", set(), "$A and $"),
        ("${A}${A}", {"A"}, "11"),
        ("", set(), ""),
    ],
)
def test_references_are_found_and_expanded(text: str, names: set[str], expanded: str) -> None:
    assert references(text) == names
    assert expand(text, {"A": "1", "B_2": "2"}) == expanded


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${A", 'is not closed by "}"'),
        ("x ${}", '"${}" is not a valid reference'),
        ("${1A}", '"${1A}" is not a valid reference'),
        ("${A-B}", "is not a valid reference"),
    ],
)
def test_malformed_references_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        references(text)
    assert message in str(caught.value)


def test_expanding_an_unknown_variable_names_it_instead_of_raising_key_error() -> None:
    with pytest.raises(ValueError) as caught:
        expand("${B} ${A} ${C}", {"A": "1"})
    assert not isinstance(caught.value, KeyError)
    assert str(caught.value) == "undefined variables ${B}, ${C}"


def test_expanded_values_are_not_expanded_again() -> None:
    assert expand("${A}", {"A": "${B}", "B": "x"}) == "${B}"


# -- secrets in specs ----------------------------------------------------------------------


def test_a_secret_volume_may_ask_for_a_restart_when_its_secret_changes() -> None:
    volumes = [
        {"name": "a", "secret": {"vault": "v", "secret": "s", "restart-on-change": True}},
        {"name": "b", "secret": {"vault": "v", "secret": "s"}},
    ]
    app = parse_application(spec(service={"volumes": volumes}))
    service = app.services[0]
    assert service.volume("a").restart_on_change is True
    assert service.volume("a").secret == SecretRef("v", "s")
    assert service.volume("b").restart_on_change is False
    document = application_to_document(app)
    written = document["services"][0]["volumes"]
    assert written[0]["secret"] == {"vault": "v", "secret": "s", "restart-on-change": True}
    assert written[1]["secret"] == {"vault": "v", "secret": "s"}  # unchanged when not set
    assert parse_application(document) == app


def test_restart_on_change_must_be_a_boolean() -> None:
    volumes = [{"name": "a", "secret": {"vault": "v", "secret": "s", "restart-on-change": "yes"}}]
    _assert_reported(
        spec(service={"volumes": volumes}),
        f"{S}.volumes[0].secret.restart-on-change",
        'expected true or false, got a string ("yes")',
    )


def test_secret_variables_are_refused_outside_env_where_they_would_not_stay_secret() -> None:
    variables = [
        {"name": "KEY", "value-from-secret": SECRET},
        {"name": "DERIVED", "value": "Bearer ${KEY}"},
        {"name": "PLAIN", "value": "x"},
    ]
    service = {
        "variables": variables,
        "volumes": _config_map({"name": "f", "data": "${DERIVED} ${PLAIN}"}),
    }
    container = {"cmd": ["run", "${KEY}", "${PLAIN}"], "env": {"A": "${KEY}", "B": "${DERIVED}"}}
    errors = errors_of(spec(service=service, container=container))
    assert errors == [
        f"{S}.volumes[0].config-map.items[0].data: ${{DERIVED}} holds a secret: use it only in "
        "a container's env, or mount the secret as a secret volume (files here are not kept "
        "secret)",
        f"{C}.cmd[1]: ${{KEY}} holds a secret: use it only in a container's env, or mount the "
        "secret as a secret volume (files here are not kept secret)",
    ]
