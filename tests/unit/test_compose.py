"""Compose files converted to application specs: what maps, what is warned about, what is
refused (docs/compose.md). The converted specs must also pass the spec's own validation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.shared.spec import parse_application
from enforcer.shared.spec.compose import ComposeError, Conversion, convert_compose, is_compose
from enforcer.shared.spec.compose_schema import load_schema
from enforcer.shared.spec.parse import SpecLoader
from enforcer.shared.spec.variables import expand


def load(text: str) -> Any:
    return yaml.load(text, Loader=SpecLoader)


def convert(text: str, environ: dict[str, str] | None = None, **kw: Any) -> Conversion:
    kw.setdefault("directory", "project")
    return convert_compose(load(text), environ=environ or {}, **kw)


def refused(text: str, **kw: Any) -> list[str]:
    with pytest.raises(ComposeError) as caught:
        convert(text, **kw)
    return caught.value.errors


def one(text: str, **kw: Any) -> dict[str, Any]:
    """The converted spec's only service."""
    services = convert(text, **kw).document["services"]
    assert len(services) == 1
    return dict(services[0])


def web(extra: str) -> str:
    lines = "".join(f"    {line}\n" for line in extra.strip("\n").splitlines())
    return f"services:\n  web:\n    image: shop/web:1\n{lines}"


# -- recognising a Compose file --------------------------------------------------------------


def test_a_compose_file_has_a_services_mapping_and_a_spec_a_services_list() -> None:
    assert is_compose({"services": {"web": {"image": "x"}}})
    assert is_compose({"services": {}})
    assert not is_compose({"name": "a", "version": "1", "services": [{"name": "web"}]})
    assert not is_compose({"name": "a"})
    assert not is_compose(["services"])


def test_a_minimal_file_becomes_a_valid_spec_named_after_its_directory() -> None:
    conversion = convert("services:\n  web:\n    image: shop/web:1\n", directory="My_Shop.v2")
    spec = conversion.document
    assert spec["name"] == "my-shopv2"
    assert spec["version"].startswith("compose-")
    assert spec["services"] == [
        {
            "name": "web",
            "network": {"outbound": "allow"},
            "containers": [{"name": "main", "image": "shop/web:1", "restart": "never"}],
        }
    ]
    assert conversion.warnings == ()
    parse_application(spec)


def test_the_name_comes_from_the_option_then_the_file_then_the_directory() -> None:
    text = "name: from-file\nservices:\n  web:\n    image: x\n"
    assert convert(text, name="from-option").document["name"] == "from-option"
    assert convert(text).document["name"] == "from-file"
    assert "--name" in refused(text, name="Not_Valid")[0]
    assert refused("services:\n  web:\n    image: x\n", directory="___")[0].startswith(
        'name: the directory "___" gives no application name'
    )


def test_the_version_follows_the_content_unless_given() -> None:
    first = convert(web("command: [a]")).document["version"]
    assert convert(web("command: [a]")).document["version"] == first
    assert convert(web("command: [b]")).document["version"] != first
    given = convert(web("command: [a]") + 'x-edgeward:\n  version: "2.0"\n')
    assert given.document["version"] == "2.0"


def test_anchors_and_merge_keys_work() -> None:
    text = """
x-defaults: &defaults
  image: shop/base:1
  restart: always
  environment: &env {A: "1", B: "2"}
services:
  one:
    <<: *defaults
  two:
    <<: *defaults
    image: shop/two:1
    environment:
      <<: *env
      B: "3"
"""
    services = convert(text).document["services"]
    assert [s["containers"][0]["image"] for s in services] == ["shop/base:1", "shop/two:1"]
    assert services[0]["containers"][0]["env"] == {"A": "1", "B": "2"}
    assert services[1]["containers"][0]["env"] == {"A": "1", "B": "3"}
    assert services[1]["containers"][0]["restart"] == "always"


# -- containers ------------------------------------------------------------------------------


def test_commands_as_strings_are_split_like_a_shell_and_lists_kept() -> None:
    main = one(web("entrypoint: /bin/sh -c\ncommand: [\"echo 'a b'\", 2]"))["containers"][0]
    assert main["entrypoint"] == ["/bin/sh", "-c"]
    assert main["cmd"] == ["echo 'a b'", "2"]
    main = one(web("command: server --name 'my shop' --port=80"))["containers"][0]
    assert main["cmd"] == ["server", "--name", "my shop", "--port=80"]


def test_environment_as_a_list_and_as_a_mapping() -> None:
    env = {"FROM_SHELL": "shell value"}
    listed = one(web("environment: [A=1, B=x=y, EMPTY=, FROM_SHELL, NOT_SET]"), environ=env)
    assert listed["containers"][0]["env"] == {
        "A": "1",
        "B": "x=y",
        "EMPTY": "",
        "FROM_SHELL": "shell value",
    }
    mapped = one(web("environment: {A: 1, FLAG: true, NONE: null, FROM_SHELL: null}"), environ=env)
    assert mapped["containers"][0]["env"] == {"A": "1", "FLAG": "true", "FROM_SHELL": "shell value"}
    warnings = convert(web("environment: [NOT_SET]")).warnings
    assert warnings == (
        "services.web.environment.NOT_SET: has no value and is not set here, so it is left out",
    )


def test_dollars_that_compose_leaves_reach_the_container_as_they_are() -> None:
    text = web(
        "environment: {PRICE: $$5, TEMPLATE: '$${NAME}', HOME_REF: $$HOME, DOUBLE: $$$$}\n"
        "command: [sh, -c, 'echo $${X} $$HOME']"
    )
    main = one(text)["containers"][0]
    parse_application(convert(text).document)
    as_run = {k: expand(v, {}) for k, v in main["env"].items()}
    assert as_run == {"PRICE": "$5", "TEMPLATE": "${NAME}", "HOME_REF": "$HOME", "DOUBLE": "$$"}
    assert [expand(w, {}) for w in main["cmd"]] == ["sh", "-c", "echo ${X} $HOME"]


def test_variables_from_the_environment_fill_the_file() -> None:
    text = "services:\n  web:\n    image: ${REGISTRY:-docker.io}/web:${TAG:?set TAG}\n"
    main = one(text, environ={"TAG": "1.4"})["containers"][0]
    assert main["image"] == "docker.io/web:1.4"
    assert refused(text) == ["services.web.image: variable TAG is not set: set TAG"]


@pytest.mark.parametrize(
    ("restart", "policy"),
    [("'no'", "never"), ("no", "never"), ("always", "always"), ("unless-stopped", "always"),
     ("on-failure", "on-failure")],
)  # fmt: skip
def test_restart_policies(restart: str, policy: str) -> None:
    assert one(web(f"restart: {restart}"))["containers"][0]["restart"] == policy


def test_without_restart_a_container_stays_stopped_as_in_compose() -> None:
    assert one(web(""))["containers"][0]["restart"] == "never"
    condition = one(web("deploy: {restart_policy: {condition: any, delay: 5s}}"))
    assert condition["containers"][0]["restart"] == "always"
    assert (
        "services.web.deploy.restart_policy.delay: not supported, ignored"
        in convert(web("deploy: {restart_policy: {condition: any, delay: 5s}}")).warnings
    )


def test_a_healthcheck_becomes_readiness_and_liveness_probes() -> None:
    text = web(
        "healthcheck:\n"
        "  test: [CMD-SHELL, wget -q -O- localhost/health]\n"
        "  interval: 1m30s\n  timeout: 500ms\n  retries: 5\n  start_period: 40s"
    )
    probes = one(text)["containers"][0]["probes"]
    readiness = {
        "exec": ["/bin/sh", "-c", "wget -q -O- localhost/health"],
        "period": "1m30s",
        "timeout": "500ms",
        "failure-threshold": 5,
    }
    assert probes == {"readiness": readiness, "liveness": {**readiness, "initial-delay": "40s"}}
    cmd = one(web("healthcheck: {test: [CMD, /bin/check, --fast]}"))["containers"][0]["probes"]
    assert cmd["liveness"] == {
        "exec": ["/bin/check", "--fast"],
        "period": "30s",
        "timeout": "30s",
        "failure-threshold": 3,
    }
    shell = one(web("healthcheck: {test: pg_isready}"))["containers"][0]["probes"]
    assert shell["readiness"]["exec"] == ["/bin/sh", "-c", "pg_isready"]
    for off in ("healthcheck: {test: [NONE]}", "healthcheck: {disable: true}"):
        assert "probes" not in one(web(off))["containers"][0]
    assert refused(web("healthcheck: {test: [CMD]}"))[0].startswith("services.web.healthcheck.test")


def test_stop_grace_period_becomes_the_stop_timeout() -> None:
    assert one(web("stop_grace_period: 1m"))["containers"][0]["stop-timeout"] == "1m"


# -- placement and resources -----------------------------------------------------------------


def test_replicas_mode_and_limits() -> None:
    text = web(
        "deploy:\n  replicas: 3\n  resources:\n"
        "    limits: {cpus: '0.5', memory: 512M, pids: 100}\n"
        "    reservations: {memory: 128M}"
    )
    conversion = convert(text)
    service = conversion.document["services"][0]
    assert service["replicas"] == 3
    assert service["resources"] == {"cpus": 0.5, "memory": "512Mi"}
    assert conversion.warnings == (
        "services.web.deploy.resources.limits.pids: not supported, ignored",
        "services.web.deploy.resources.reservations.memory: not supported (the limits are also "
        "the request), ignored",
    )
    assert one(web("deploy: {mode: global}"))["mode"] == "one-per-matching-host"
    legacy = one(web("cpus: 1.5\nmem_limit: 1g\nscale: 2"))
    assert legacy["resources"] == {"cpus": 1.5, "memory": "1Gi"} and legacy["replicas"] == 2


def test_gpu_reservations_become_gpus() -> None:
    text = web(
        "deploy:\n  resources:\n    reservations:\n      devices:\n"
        "        - {driver: nvidia, count: 2, capabilities: [gpu]}"
    )
    assert one(text)["placement"] == {"gpus": 2}
    errors = refused(text.replace("count: 2", "count: all"))
    assert errors[0].startswith("services.web.deploy.resources.reservations.devices[0]: give count")


def test_devices_become_device_labels() -> None:
    text = web("devices: [/dev/video0, '/dev/ttyUSB1:/dev/gps']") + (
        "x-edgeward:\n  devices: {'/dev/ttyUSB*': serial-gps}\n"
    )
    conversion = convert(text)
    assert conversion.document["services"][0]["placement"] == {"devices": ["camera", "serial-gps"]}
    assert conversion.warnings == (
        "services.web.devices[1]: every serial-gps device of the host is passed in at its own "
        "path, not at /dev/gps",
    )
    errors = refused(web("devices: [/dev/ttyS0, /dev/nvidia0]"))
    assert errors[0].startswith('services.web.devices[0]: "/dev/ttyS0" has no device label')
    assert 'x-edgeward: {devices: {"/dev/ttyS0": LABEL}}' in errors[0]
    assert errors[1].startswith('services.web.devices[1]: "/dev/nvidia0" is a GPU node')


# -- network ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ports", "ingress"),
    [
        ('["8080:80"]', [(80, 8080, "tcp")]),
        ('["0.0.0.0:53:53/udp"]', [(53, 53, "udp")]),
        (
            '["8000-8002:9000-9002"]',
            [(9000, 8000, "tcp"), (9001, 8001, "tcp"), (9002, 8002, "tcp")],
        ),
        ("[{target: 80, published: 8081}]", [(80, 8081, "tcp")]),
        ('[{target: 80, published: "8082", protocol: udp}]', [(80, 8082, "udp")]),
        ('["[::]:8443:443"]', [(443, 8443, "tcp")]),
    ],
)
def test_published_ports_become_ingress(ports: str, ingress: list[tuple[int, int, str]]) -> None:
    network = one(web(f"ports: {ports}"))["network"]
    assert network["ingress"] == [
        {"port": p, "host-port": h, "protocol": proto} for p, h, proto in ingress
    ]


def test_a_port_without_a_host_port_is_not_published_with_a_warning() -> None:
    conversion = convert(web('ports: ["9000"]'))
    assert "ingress" not in conversion.document["services"][0]["network"]
    assert conversion.warnings[0].startswith('services.web.ports[0]: "9000" has no host port')


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ('["8000-8010:8000-8005"]', "must be ranges of the same length"),
        ('["8000-8010:80"]', "must be ranges of the same length"),
        ('["127.0.0.1:8080:80"]', "publishing on the address 127.0.0.1 alone is not supported"),
        ('["8080:80/sctp"]', 'protocol "sctp" is not supported'),
        ('["70000:80"]', '"70000" is not a port or a port range'),
        ('["1-100:1-100"]', "publishes 100 ports; at most 64 are allowed"),
    ],
)
def test_bad_ports_are_refused(ports: str, message: str) -> None:
    errors = refused(web(f"ports: {ports}"))
    assert len(errors) == 1 and errors[0].startswith("services.web.ports") and message in errors[0]


def test_networks_are_the_applications_own_and_internal_ones_deny_outbound() -> None:
    text = (
        "services:\n"
        "  web: {image: x, networks: [front, back]}\n"
        "  db: {image: y, networks: {back: {aliases: [database]}}}\n"
        "networks:\n  front: {}\n  back: {internal: true, driver: bridge}\n"
    )
    conversion = convert(text)
    web_service, db = conversion.document["services"]
    assert web_service["network"] == {"outbound": "allow"}
    assert db["network"] == {"outbound": "deny"}
    assert conversion.warnings == (
        "networks.back.driver: not supported (Docker's local driver is used), ignored",
        "networks: the services of an application share its one network, so Compose's "
        "separation between networks is not kept",
        "services.db.networks.back.aliases: not supported, ignored",
    )
    errors = refused("services:\n  web: {image: x, networks: [nowhere]}\n")
    assert errors == [
        'services.web.networks: network "nowhere" is not defined in the top-level networks'
    ]


def test_host_network_privileged_and_host_namespaces_are_refused() -> None:
    errors = refused(web("privileged: true\nnetwork_mode: host\npid: host\nipc: host"))
    assert [e.split(":")[0] for e in errors] == [
        "services.web.privileged",
        "services.web.network_mode",
        "services.web.pid",
        "services.web.ipc",
    ]
    assert "outside its tenant" in errors[0]
    assert "keeps tenants apart" in errors[1]
    assert one(web("privileged: false\nnetwork_mode: bridge"))["name"] == "web"


# -- volumes and secrets ---------------------------------------------------------------------


def test_named_volumes_are_persistent_and_anonymous_ones_and_tmpfs_ephemeral() -> None:
    text = (
        web(
            "volumes:\n  - db_data:/var/lib/data\n  - db_data:/backup:ro\n  - /var/cache\n"
            "  - {type: tmpfs, target: /run/scratch}\n"
            "  - {type: volume, source: logs, target: /logs, read_only: true}\n"
            "tmpfs: /tmp"
        )
        + "volumes:\n  db_data:\n  logs: {driver: local}\n"
    )
    conversion = convert(text)
    service = conversion.document["services"][0]
    assert service["volumes"] == [
        {"name": "db-data", "persistent": {}},
        {"name": "var-cache", "ephemeral": {}},
        {"name": "run-scratch", "ephemeral": {}},
        {"name": "logs", "persistent": {}},
        {"name": "tmp", "ephemeral": {}},
    ]
    assert service["containers"][0]["mounts"] == [
        {"volume": "db-data", "path": "/var/lib/data", "read-only": False},
        {"volume": "db-data", "path": "/backup", "read-only": True},
        {"volume": "var-cache", "path": "/var/cache", "read-only": False},
        {"volume": "run-scratch", "path": "/run/scratch", "read-only": False},
        {"volume": "logs", "path": "/logs", "read-only": True},
        {"volume": "tmp", "path": "/tmp", "read-only": False},
    ]
    assert (
        "services.web.volumes[2]: an anonymous volume becomes an ephemeral volume"
        in (conversion.warnings[1])
    )
    parse_application(conversion.document)


def test_a_volume_used_by_two_services_warns_that_each_gets_its_own() -> None:
    text = (
        "services:\n  a: {image: x, volumes: ['shared:/a']}\n  b: {image: x, volumes: ['shared:/b']}\n"
        "volumes:\n  shared: {}\n"
    )
    assert convert(text).warnings == (
        "volumes.shared: is used by a and b: each service gets a volume of its own (instances "
        "may run on different hosts)",
    )


@pytest.mark.parametrize(
    "volume",
    ["./html:/usr/share/nginx/html", "/srv/data:/data", "~/conf:/conf:ro",
     "{type: bind, source: /etc, target: /host-etc}"],
)  # fmt: skip
def test_bind_mounts_are_refused_with_the_reason(volume: str) -> None:
    errors = refused(web(f"volumes: [{volume}]"))
    assert len(errors) == 1
    assert errors[0].startswith("services.web.volumes[0]: ")
    assert "is a bind mount of a host path: Edgeward does not mount host paths" in errors[0]
    assert "use a named volume" in errors[0]


def test_an_undeclared_named_volume_is_refused() -> None:
    assert refused(web("volumes: ['data:/data']")) == [
        'services.web.volumes[0]: volume "data" is not defined in the top-level volumes'
    ]


SECRETS = """
secrets:
  db_password:
    file: ./db_password.txt
    x-edgeward: {vault: shop, secret: db}
  api_key:
    external: true
    x-edgeward: {vault: shop, secret: db}
  tls_cert:
    file: ./cert.pem
    x-edgeward: {vault: shop, secret: tls}
"""


def test_file_secrets_become_secret_volumes_of_the_vault_named() -> None:
    text = web("secrets: [db_password, api_key, {source: tls_cert, target: /etc/tls/cert.pem}]")
    service = one(text + SECRETS)
    assert service["volumes"] == [
        {"name": "secrets", "secret": {"vault": "shop", "secret": "db"}},
        {"name": "etc-tls", "secret": {"vault": "shop", "secret": "tls", "key": "cert.pem"}},
    ]
    assert service["containers"][0]["mounts"] == [
        {"volume": "secrets", "path": "/run/secrets", "read-only": True},
        {"volume": "etc-tls", "path": "/etc/tls", "read-only": True},
    ]
    single = one(web("secrets: [db_password]") + SECRETS)
    assert single["volumes"][0]["secret"] == {"vault": "shop", "secret": "db", "key": "db_password"}


def test_secrets_without_a_vault_or_from_two_vault_secrets_in_one_place_are_refused() -> None:
    errors = refused(web("secrets: [plain]") + "secrets:\n  plain: {file: ./p.txt}\n")
    assert errors[0].startswith("secrets.plain: Edgeward does not read secret files")
    assert "x-edgeward: {vault: VAULT, secret: SECRET}" in errors[0]
    errors = refused(web("secrets: [db_password, tls_cert]") + SECRETS)
    assert errors == [
        "services.web.secrets: the files in /run/secrets come from several vault secrets "
        "(shop/db, shop/tls): the files of one directory come from one secret, one file per key"
    ]
    assert refused(web("secrets: [nowhere]")) == [
        "secrets.nowhere: is not defined in the top-level secrets"
    ]


# -- what is refused, what is warned about ---------------------------------------------------


def test_a_build_only_service_is_refused_naming_it() -> None:
    errors = refused("services:\n  web: {image: x}\n  worker:\n    build: ./worker\n")
    assert errors == [
        "services.worker: an image is required (it only has build): Edgeward runs images from a "
        "registry and does not build them; build and push the image, then name it in image"
    ]
    assert convert(web("build: .")).warnings == (
        "services.web.build: not supported (the image is pulled), ignored",
    )


def test_an_unknown_top_level_key_is_refused_and_known_unsupported_ones_warned() -> None:
    errors = refused("servces:\n  web: {image: x}\nservices:\n  web: {image: x}\n")
    assert errors[0].startswith("servces: is not a key of a Compose file")
    conversion = convert(
        'version: "3.8"\nx-anything: {a: 1}\nconfigs: {c: {file: ./c}}\n' + web("")
    )
    assert conversion.warnings == (
        "version: obsolete in Compose, ignored",
        "configs: not supported (use a config-map volume in a spec), ignored",
    )


def test_every_unsupported_service_key_is_warned_about_by_path() -> None:
    conversion = convert(web("user: '1000'\nlabels: {a: b}\nx-team: shop\ncap_add: [NET_ADMIN]"))
    assert conversion.warnings == (
        "services.web.user: not supported, ignored",
        "services.web.labels: not supported, ignored",
        "services.web.cap_add: not granted, ignored",
    )


def test_a_service_name_that_is_not_a_dns_label_is_refused() -> None:
    errors = refused("services:\n  my_db: {image: x}\n")
    assert errors[0].startswith('services.my_db: "my_db" is not a valid service name here')


def test_depends_on_must_name_services_of_the_file() -> None:
    ok = "services:\n  web: {image: x, depends_on: {db: {condition: service_healthy}}}\n  db: {image: y}\n"
    assert len(convert(ok).document["services"]) == 2
    assert refused(web("depends_on: [cache]")) == [
        'services.web.depends_on: "cache" is not a service of this file'
    ]


def test_problems_found_by_the_spec_are_given_with_the_compose_service() -> None:
    errors = refused(web("deploy: {resources: {limits: {memory: 1k}}}"))
    assert errors == [
        "services.web.resources.memory: must be at least 6Mi (Docker's minimum), got 1024 bytes "
        "(in the converted spec)"
    ]


def test_every_problem_is_reported_at_once() -> None:
    errors = refused(
        "nope: 1\nservices:\n  a: {build: .}\n  b: {image: x, ports: ['1-3:1-2'], command: $$x $ y}\n"
    )
    assert len(errors) == 4


# -- the Compose schema ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    found, note = load_schema()
    if found is None:
        from tests.support.ci import missing

        missing(note)
    return found


def test_the_compose_schema_finds_wrong_types(schema: dict[str, Any]) -> None:
    errors = refused(web("deploy: {replicas: three}"), schema=schema)
    assert errors == [
        "services.web.deploy.replicas: 'three' is not of type 'integer' (Compose specification)"
    ]
    # keys the schema does not know are the conversion's to warn about
    assert convert(web("x-foo: 1\nuser: me"), schema=schema).warnings == (
        "services.web.user: not supported, ignored",
    )


def test_without_the_schema_file_the_conversion_still_works(tmp_path: Path) -> None:
    schema, note = load_schema([tmp_path / "compose_spec.json"])
    assert schema is None
    assert "is not installed: the file is converted without it" in note
    assert convert(web(""), schema=schema).document["services"][0]["name"] == "web"


# -- the examples ----------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "compose"


@pytest.mark.parametrize("example", ["shop", "monitored", "camera", "unsupported"])
def test_every_example_converts_to_a_valid_spec(example: str, schema: dict[str, Any]) -> None:
    path = EXAMPLES / example / "compose.yaml"
    conversion = convert(path.read_text(), directory=example, schema=schema)
    parse_application(conversion.document)
    if example == "unsupported":
        ignored = {w.split(":")[0] for w in conversion.warnings}
        assert {"services.app.build", "services.app.user", "services.app.logging",
                "configs", "version"} <= ignored  # fmt: skip
    else:
        assert conversion.warnings == ()


def test_numbers_from_variables_are_numbers_as_in_compose(schema: dict[str, Any]) -> None:
    text = web(
        "ports: [{target: 80, published: '${PORT}'}]\n"
        "deploy: {replicas: '${N}'}\n"
        "healthcheck: {test: [CMD, check], retries: '${R}'}"
    )
    service = one(text, environ={"PORT": "8080", "N": "2", "R": "4"}, schema=schema)
    assert service["replicas"] == 2
    assert service["network"]["ingress"] == [{"port": 80, "host-port": 8080, "protocol": "tcp"}]
    assert service["containers"][0]["probes"]["readiness"]["failure-threshold"] == 4


def test_the_schema_names_the_wrong_part_of_a_long_form(schema: dict[str, Any]) -> None:
    errors = refused(web("ports: [{target: eighty, published: 1}]"), schema=schema)
    assert errors == [
        "services.web.ports[0].target: 'eighty' is not of type 'integer' (Compose specification)"
    ]


@pytest.mark.repository
def test_the_yaml_examples_of_the_compose_page_convert() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "compose.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", page, re.S)
    assert blocks
    for block in blocks:
        parse_application(convert(block).document)


def test_services_with_profiles_are_left_out_as_compose_does_by_default() -> None:
    conversion = convert(web("") + "  debug: {image: x, profiles: [debug, dev]}\n")
    assert [s["name"] for s in conversion.document["services"]] == ["web"]
    assert conversion.warnings == (
        "services.debug: has profiles (debug, dev), so Compose does not start it by default; "
        "left out",
    )


def test_tmpfs_options_are_dropped_and_names_kept_apart() -> None:
    service = one(web("volumes: [/tmp]\ntmpfs: ['/tmp2:size=64m', /run]"))
    assert [v["name"] for v in service["volumes"]] == ["tmp", "tmp2", "run"]
    same = one(web("volumes: [/a-b]\ntmpfs: [/a/b]"))
    assert [v["name"] for v in same["volumes"]] == ["a-b", "a-b-0"]
    errors = refused(web("volumes: [/run]\ntmpfs: [/run/]"))
    assert errors == [
        'services.web.containers[0].mounts[1].path: duplicate mount path "/run/" (first at '
        "services.web.containers[0].mounts[0].path) (in the converted spec)"
    ]
