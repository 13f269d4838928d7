"""docs/ stays true: what the code declares is documented, found from the code itself.

Configuration keys come from asking the parsers (an unknown key's error lists the known ones),
CLI commands and options from walking the click groups of the console scripts in
pyproject.toml, HTTP routes from the aiohttp applications the services build, spec fields from
the canonical documents the spec writers produce. Each test fails when something is added to the
code without its documentation.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PROBE_KEY = "zz-not-a-key"


def _doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# --- markdown helpers -----------------------------------------------------------------------


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading text, body up to the next heading of any level), in order; fenced code blocks
    do not start sections."""
    out: list[tuple[str, list[str]]] = [("", [])]
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            out.append((line.lstrip("#").strip(), []))
        else:
            out[-1][1].append(line)
    return [(title, "\n".join(body)) for title, body in out]


def _part(text: str, heading_word: str) -> str:
    """The text from the first level-2 heading that contains `heading_word` up to the next
    level-2 heading."""
    match = re.search(rf"^## [^\n]*{re.escape(heading_word)}[^\n]*$", text, re.M)
    assert match, f"no '## ...{heading_word}...' heading"
    rest = text[match.end() :]
    end = re.search(r"^## ", rest, re.M)
    return rest[: end.start()] if end else rest


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def _code(text: str, code: str) -> bool:
    """Whether `code` appears in backticks (alone, or as the start of a longer code span)."""
    return re.search(rf"`{re.escape(code)}(`|[ :\[=])", text) is not None


# --- configuration keys ---------------------------------------------------------------------

_KNOWN = re.compile(r"\(known(?: here)?: ([^)]*)\)")
_ONLY = re.compile(r"only ([\w-]+(?:, [\w-]+)*(?: and [\w-]+)?)\)")
_NO_KEYS = "takes no keys"


def _listed(message: str) -> list[str] | None:
    """The keys an unknown-key error lists as known, or None when it lists none."""
    if _NO_KEYS in message:
        return []
    for pattern in (_KNOWN, _ONLY):
        found = pattern.search(message)
        if found:
            return [k.strip() for k in re.split(r",|\band\b", found.group(1)) if k.strip()]
    return None


def _probe_tables(
    parse: Callable[[str], str | None], path: tuple[str, ...], array: bool
) -> list[str] | None:
    """Asks the parser for the keys of the table at `path`: [] for a table with no keys,
    None when it is no table (or a free-form one that takes any key)."""
    header = ""
    if path:
        name = ".".join(path)
        header = f"[[{name}]]\n" if array else f"[{name}]\n"
    message = parse(f'{header}{PROBE_KEY} = "x"\n')
    if message is None or PROBE_KEY not in message:
        return None
    return _listed(message)


def _config_keys(parse: Callable[[str], str | None]) -> dict[str, str]:
    """Every key path the parser knows -> "key" | "table" | "array" | "map"."""
    found: dict[str, str] = {}
    top = _probe_tables(parse, (), False)
    assert top, "the parser's unknown-key error no longer lists the known keys"

    def walk(path: tuple[str, ...], keys: list[str]) -> None:
        for key in keys:
            sub = (*path, key)
            dotted = ".".join(sub)
            for array in (False, True):
                header = f"[[{dotted}]]" if array else f"[{dotted}]"
                message = parse(f'{header}\n{PROBE_KEY} = "x"\n')
                if message is None:  # a free-form table: any key is fine
                    found[dotted] = "map"
                    break
                if PROBE_KEY in message and (inner := _listed(message)) is not None:
                    found[dotted] = "array" if array else "table"
                    walk(sub, inner)
                    break
                if PROBE_KEY in message:  # a table whose error lists no keys
                    found[dotted] = "array" if array else "table"
                    break
                if "array of tables" not in message:
                    found[dotted] = "key"
                    break
            else:
                found[dotted] = "key"

    walk((), top)
    return found


def _enforcer_parse(text: str) -> str | None:
    from enforcer.config.load import parse_config
    from enforcer.config.model import ConfigError

    try:
        parse_config(text, Path("probe.toml"))
    except ConfigError as exc:
        return str(exc)
    return None


def _control_parse(text: str) -> str | None:
    from control.config import ConfigError, parse_config

    try:
        parse_config(text, "probe.toml")
    except ConfigError as exc:
        return str(exc)
    return None


def _undocumented_keys(keys: dict[str, str], text: str) -> list[str]:
    missing = []
    for key, kind in sorted(keys.items()):
        shown = [f"`{key}`"]
        if kind == "table":
            shown.append(f"[{key}]")
        if kind == "array":
            shown.append(f"[[{key}]]")
        if not any(s in text for s in shown):
            missing.append(key)
    return missing


def test_every_enforcer_config_key_is_in_configuration_md() -> None:
    keys = _config_keys(_enforcer_parse)
    from enforcer.config.model import EnforcerConfig

    sections = [
        f.name.replace("_", "-")
        for f in dataclasses.fields(EnforcerConfig)
        if isinstance(f.default_factory, type) and dataclasses.is_dataclass(f.default_factory)
    ]
    assert sections and set(sections) <= set(keys), "the probe missed sections of EnforcerConfig"
    text = _part(_doc("configuration.md"), "enforcer.toml")
    assert _undocumented_keys(keys, text) == []


def test_every_control_config_key_is_in_configuration_md() -> None:
    keys = _config_keys(_control_parse)
    from control.config import ControlConfig

    fields = {f.name.replace("_", "-") for f in dataclasses.fields(ControlConfig)}
    assert fields & set(keys), "the probe found none of ControlConfig's fields"
    text = _part(_doc("configuration.md"), "control.toml")
    assert _undocumented_keys(keys, text) == []


def _default_of(config: object, key: str) -> tuple[bool, object]:
    """(found, value): the default of `key` in the dataclass `config` (``api.token-file`` is
    ``config.api.token_file``); not found for tables and keys without a field of their own."""
    value = config
    for part in key.split("."):
        name = part.replace("-", "_")
        if not dataclasses.is_dataclass(value) or not hasattr(value, name):
            return False, None
        value = getattr(value, name)
    return not dataclasses.is_dataclass(value), value


def _renderings(value: object) -> list[str]:
    from enforcer.shared.units import format_duration

    if value is None:
        return ['`""`', "none"]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, float):
        return [format_duration(value)]
    if isinstance(value, str | Path):
        return [f"`{value}`", f'`"{value}"`'] if str(value) else ['`""`']
    if isinstance(value, Mapping) and not value:
        return ["{}"]
    if isinstance(value, tuple | list) and not value:
        return ["`[]`"]
    return [repr(value)]


def _wrong_defaults(keys: dict[str, str], config: object, text: str) -> list[str]:
    wrong = []
    for key in sorted(keys):
        found, value = _default_of(config, key)
        row = re.search(rf"^\| `{re.escape(key)}` \|([^|]*)\|", text, re.M)
        if found and row is not None and not any(r in row.group(1) for r in _renderings(value)):
            wrong.append(f"{key}: {_renderings(value)[0]}")
    return wrong


def test_every_config_default_is_the_one_in_configuration_md() -> None:
    from control.config import ControlConfig
    from enforcer.config.model import EnforcerConfig

    text = _doc("configuration.md")
    enforcer = _wrong_defaults(
        _config_keys(_enforcer_parse), EnforcerConfig(), _part(text, "enforcer.toml")
    )
    control = _wrong_defaults(
        _config_keys(_control_parse), ControlConfig(), _part(text, "control.toml")
    )
    assert enforcer + control == []


def test_the_config_probe_finds_what_a_new_key_would_add() -> None:
    """The probe reads the parser's own list: a key added to it shows up here."""
    message = _enforcer_parse(f'[api]\n{PROBE_KEY} = "x"\n')
    assert message is not None
    assert "listen" in (_listed(message) or [])


# --- CLI ------------------------------------------------------------------------------------


def _scripts() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts: dict[str, str] = project["project"]["scripts"]
    return scripts


def _root_group(entry: str) -> click.Group:
    """The click group behind a console script (its entry point, or the module's top group
    when the entry point is a plain function that calls it)."""
    module_name, _, attribute = entry.partition(":")
    module = importlib.import_module(module_name)
    target = getattr(module, attribute)
    if isinstance(target, click.Group):
        return target
    groups = [v for v in vars(module).values() if isinstance(v, click.Group)]
    nested = {id(c) for g in groups for c in g.commands.values()}
    roots = [g for g in groups if id(g) not in nested]
    assert len(roots) == 1, f"{entry}: cannot tell its click group from {roots}"
    return roots[0]


def _commands(cmd: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _commands(sub, f"{path} {name}")


def _all_commands() -> list[tuple[str, click.Command, click.Group]]:
    found = []
    for program, entry in sorted(_scripts().items()):
        root = _root_group(entry)
        found += [(path, cmd, root) for path, cmd in _commands(root, program)]
    return found


def _flag(option: click.Option) -> str:
    flags = [*option.opts, *option.secondary_opts]
    return max(flags, key=lambda f: (f.startswith("--"), len(f)))


def _cli_section(text: str, path: str) -> str | None:
    for title, body in _sections(text):
        if title == f"`{path}`":
            return body
    return None


def test_the_cli_walk_finds_both_programs() -> None:
    paths = {path for path, _, _ in _all_commands()}
    assert {"edge-enforcer run", "edge-control serve"} <= paths


@pytest.mark.parametrize("path", [p for p, _, _ in _all_commands()])
def test_every_cli_command_and_option_is_in_cli_md(path: str) -> None:
    text = _doc("cli.md")
    command, root = next((c, r) for p, c, r in _all_commands() if p == path)
    section = _cli_section(text, path)
    assert section is not None, f"cli.md has no heading `{path}`"
    root_options = {p.name for p in root.params if isinstance(p, click.Option)}
    root_section = _cli_section(text, path.split()[0]) or ""
    missing = []
    for param in command.params:
        if isinstance(param, click.Option):
            if param.hidden or "--help" in param.opts:
                continue
            shared = command is not root and param.name in root_options
            where = root_section if shared else section
            if not _has_word(where, _flag(param)):
                missing.append(_flag(param))
            envvars = [param.envvar] if isinstance(param.envvar, str) else param.envvar or []
            missing += [e for e in envvars if not _has_word(text, e)]
        elif (
            isinstance(param, click.Argument)
            and param.name is not None
            and not _has_word(section, param.name.upper())
        ):
            missing.append(param.name.upper())
    assert missing == [], f"{path}: not in its section of cli.md"


def test_every_environment_variable_the_code_reads_is_in_cli_md() -> None:
    names = {
        name
        for package in ("enforcer", "control")
        for source in (ROOT / package).rglob("*.py")
        for name in re.findall(r"\bEDGEWARD_[A-Z][A-Z_]*\b", source.read_text(encoding="utf-8"))
    }
    assert "EDGEWARD_CONFIG" in names
    text = _doc("cli.md")
    assert sorted(n for n in names if f"`{n}`" not in text) == []


# --- HTTP routes ----------------------------------------------------------------------------


class _Stub:
    """Stands for the service a route table is built over; no handler runs here."""

    def __getattr__(self, name: str) -> Any:
        return _Stub()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _Stub()


def _routes(app: web.Application) -> set[str]:
    return {
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.method not in ("HEAD", "*") and route.resource is not None
    }


def _enforcer_app() -> web.Application:
    from enforcer.api.server import make_app

    stub: Any = _Stub()
    return make_app(stub)


def _control_app() -> web.Application:
    from control.api.app import ControlAPI

    stub: Any = _Stub()
    app: web.Application = ControlAPI(stub).app()
    return app


@pytest.mark.parametrize(
    ("service", "build"), [("Enforcer", _enforcer_app), ("Control", _control_app)]
)
def test_every_route_is_in_http_api_md(service: str, build: Callable[[], web.Application]) -> None:
    routes = _routes(build())
    assert len(routes) > 5, routes
    text = _part(_doc("http-api.md"), service)
    assert sorted(r for r in routes if f"`{r}`" not in text) == []


def test_every_enforcer_error_code_is_in_http_api_md() -> None:
    from enforcer.api.schemas import ERROR_CODES

    assert ERROR_CODES
    text = _part(_doc("http-api.md"), "Enforcer")
    assert sorted(c for c in ERROR_CODES if f"`{c}`" not in text) == []


def test_every_control_error_code_is_in_http_api_md() -> None:
    from control.model import ControlError

    def subclasses(cls: type) -> Iterator[type]:
        yield cls
        sub: type
        for sub in cls.__subclasses__():
            yield from subclasses(sub)

    codes = {getattr(cls, "code", "") for cls in subclasses(ControlError)} - {""}
    text = _part(_doc("http-api.md"), "Control")
    assert sorted(c for c in codes if f"`{c}`" not in text) == []


def _families(exposition: str) -> list[str]:
    return re.findall(r"^# HELP (\S+) ", exposition, re.M)


def test_every_metric_family_is_in_http_api_md() -> None:
    import time
    from types import SimpleNamespace

    from control.api.public import exposition
    from enforcer.api.metrics import Histogram, render_metrics

    enforcer = _families(render_metrics([], True, time.time(), Histogram()))
    fleet = SimpleNamespace(sites={}, desired=SimpleNamespace(polling=()), deployments={}, apps={})
    api: Any = SimpleNamespace(
        service=SimpleNamespace(fleet=fleet, metrics=SimpleNamespace(counters={})), in_flight=0
    )
    control = _families(exposition(api))
    assert len(enforcer) > 4 and len(control) > 10
    text = _doc("http-api.md")
    documented = {
        "Enforcer": _route_row(_part(text, "Enforcer"), "GET /v1/metrics"),
        "Control": _part(text, "Control"),
    }
    missing = [
        f"{service}: {family}"
        for service, families in (("Enforcer", enforcer), ("Control", control))
        for family in families
        if family not in documented[service]
        and family.removeprefix("edgeward_control") not in documented[service]
    ]
    assert missing == []


def _route_row(text: str, route: str) -> str:
    row = next((line for line in text.splitlines() if line.startswith(f"| `{route}`")), None)
    assert row is not None, f"http-api.md has no row for {route}"
    return row


def test_every_field_of_an_instance_and_an_application_is_in_http_api_md() -> None:
    from enforcer.facade import AppRecord, AppSource, ContainerStatus, InstanceStatus

    text = _part(_doc("http-api.md"), "Enforcer")
    instance = {
        f.name for cls in (InstanceStatus, ContainerStatus) for f in dataclasses.fields(cls)
    }
    application = set(AppRecord("a", "1", "system", AppSource.LOCAL, {}, 0.0).to_json())
    rows = {
        "GET /v1/instances": instance,
        "GET /v1/applications/{name}": application,
    }
    missing = [
        f"{route}: {name}"
        for route, names in rows.items()
        for name in sorted(names)
        if not _has_word(_route_row(text, route), name)
    ]
    assert missing == []


def test_every_instance_state_is_in_http_api_md() -> None:
    from enforcer.facade import InstanceState

    text = _doc("http-api.md")
    assert [s.value for s in InstanceState if f"`{s.value}`" not in text] == []


# --- specs, labels, paths -------------------------------------------------------------------


def _keys(value: object, prefix: str = "", free: str = "") -> Iterator[tuple[str, str]]:
    """(key, dotted path) of every mapping key in `value`, lists walked through; the keys
    inside a mapping named `free` are the user's (a container's env), not fields."""
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield str(key), path
            if key != free:
                yield from _keys(inner, path, free)
    elif isinstance(value, list):
        for inner in value:
            yield from _keys(inner, prefix, free)


def _example_application(name: str) -> Any:
    from enforcer.shared.spec import load_application

    return load_application((ROOT / "examples" / name).read_bytes())


def test_every_application_spec_field_is_in_application_spec_md() -> None:
    from enforcer.shared.spec import application_to_document

    document = application_to_document(_example_application("full-spec.yaml"))
    text = _doc("application-spec.md")
    fields = {key for key, _ in _keys(document, free="env")}
    assert len(fields) > 30
    assert sorted(f for f in fields if not _code(text, f)) == []


def test_every_spec_limit_is_in_application_spec_md() -> None:
    from enforcer.shared.units import format_size

    limits = importlib.import_module("enforcer.shared.spec.limits")
    values = {name: getattr(limits, name) for name in limits.__all__}
    assert values
    section = _part(_doc("application-spec.md"), "Reading and validation")
    missing = [
        f"{name} = {value}"
        for name, value in values.items()
        if isinstance(value, int)
        and not any(_has_word(section, r) for r in (str(value), f"{value:,}", format_size(value)))
    ]
    assert missing == []


def test_every_system_variable_is_in_application_spec_md() -> None:
    from enforcer.shared.spec import SYSTEM_VARIABLES

    text = _doc("application-spec.md")
    assert [v for v in SYSTEM_VARIABLES if f"`{v}`" not in text] == []


def test_every_deployment_field_is_in_deployment_spec_md() -> None:
    from control.fleet.deployments import deployment_to_document, parse_deployment

    documents = [
        deployment_to_document(
            parse_deployment(
                {
                    "name": "d",
                    "application": "a",
                    "placement": placement,
                    "strategy": {"canary-sites": "canary"},
                }
            )
        )
        for placement in ({"all-sites": True}, {"match-site-labels": "customer = acme"})
    ]
    text = _doc("deployment-spec.md")
    paths = {path for document in documents for _, path in _keys(document)}
    assert sorted(p for p in paths if f"`{p}`" not in text) == []


def test_every_docker_label_of_a_container_is_in_the_paths_page() -> None:
    from enforcer.reconcile.instances import Context, desired_instance

    app = _example_application("hello.yaml")
    service = app.services[0]
    instance = desired_instance(
        app, service, f"{app.name}.{service.name}.0", Context("site", "host"), instances_dir="/x"
    )
    labels = {key for c in instance.containers for key, _ in c.labels}
    labels.add("edgeward.spec-hash")  # added by the runtime, from the config hash
    assert "edgeward.managed" in labels
    text = _doc("docker-labels-and-paths.md")
    assert sorted(label for label in labels if f"`{label}" not in text) == []


def test_every_system_label_is_in_labels_md() -> None:
    from enforcer.devices.inventory import Inventory
    from enforcer.site.hostinfo import system_labels

    labels = set(system_labels(Inventory()))
    labels.add("system/name")
    labels.add("system/gpu")
    text = _doc("labels.md")
    assert sorted(label for label in labels if f"`{label}`" not in text) == []


# --- links and the index --------------------------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    broken = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (page.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    assert broken == []


def test_the_docs_index_lists_every_page() -> None:
    index = _doc("README.md")
    pages = [p.name for p in DOCS.glob("*.md") if p.name != "README.md"]
    assert len(pages) >= 10
    assert sorted(p for p in pages if f"]({p})" not in index) == []


def test_docs_name_nothing_outside_the_repository() -> None:
    for page in _markdown_files():
        text = page.read_text(encoding="utf-8")
        assert "shared/DESIGN" not in text and "](../../" not in text, page


def test_examples_in_docs_parse() -> None:
    """The YAML examples of the spec pages are valid documents of their kind."""
    from control.fleet.deployments import parse_deployment
    from enforcer.shared.spec import load_application

    application = re.search(r"```yaml\n(.*?)```", _doc("application-spec.md"), re.S)
    deployment = re.search(r"```yaml\n(.*?)```", _doc("deployment-spec.md"), re.S)
    assert application and deployment
    assert load_application(application.group(1)).name == "vision"
    assert parse_deployment(yaml.safe_load(deployment.group(1))).name == "vision-eu"
