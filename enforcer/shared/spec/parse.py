"""Reading and writing application specs (DESIGN.md, "Application spec").

`load_application` reads YAML (or JSON) text; `parse_application` validates a loaded document
(see `enforcer.shared.spec.validate`) and builds the frozen model.
Every problem is collected with its
path before failing, so one `SpecError` tells the user everything that is wrong.
`application_to_document` writes the canonical document back; it parses to an equal
`Application`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import yaml

from enforcer.shared.spec.model import (
    Application,
    Container,
    ExecProbe,
    HttpProbe,
    Mode,
    Probe,
    SecretRef,
    Service,
    Variable,
    Volume,
    VolumeKind,
)
from enforcer.shared.spec.validate import FieldError, validate_application
from enforcer.shared.units import format_duration, format_size

__all__ = [
    "MAX_SPEC_BYTES",
    "MAX_SPEC_DEPTH",
    "MAX_SPEC_VALUES",
    "FieldError",
    "SpecError",
    "application_to_document",
    "load_application",
    "parse_application",
]

MAX_SPEC_BYTES = 1024 * 1024  # a spec's text, YAML or JSON
MAX_SPEC_VALUES = 200_000  # values in a loaded document, YAML aliases expanded
MAX_SPEC_DEPTH = 64  # nesting of YAML mappings and lists; a valid spec needs about 10
_MAX_SHOWN_ERRORS = 100


class SpecError(ValueError):
    """A spec that is not valid; `errors` holds every problem found, roughly in document order.

    ``str()`` gives one ``path: message`` line per problem (the first 100 of them).
    """

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        lines = [str(error) for error in self.errors[:_MAX_SHOWN_ERRORS]]
        if len(self.errors) > _MAX_SHOWN_ERRORS:
            lines.append(f"... and {len(self.errors) - _MAX_SHOWN_ERRORS} more errors")
        super().__init__("\n".join(lines))


# -- loading -------------------------------------------------------------------------------


class SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one, and documents
    nested deeper than any spec needs (instead of overflowing the stack)."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_SPEC_DEPTH:
                mark = parent.start_mark if parent is not None else None
                problem = f"nested more than {MAX_SPEC_DEPTH} levels deep"
                raise yaml.composer.ComposerError(None, None, problem, mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            identity = (key_node.tag, key_node.value)
            if identity in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f'the key "{key_node.value}" is given twice',
                    key_node.start_mark,
                )
            seen.add(identity)
        return super().construct_mapping(node, deep)


def _whole_error(message: str) -> SpecError:
    return SpecError([FieldError("", message)])


def load_application(text: str | bytes, *, tenant: str = "system") -> Application:
    """The application in YAML or JSON `text`; raises SpecError listing every problem."""
    size = len(text)  # a character is at least one byte
    if isinstance(text, str) and size <= MAX_SPEC_BYTES:
        size = len(text.encode("utf-8", "replace"))
    if size > MAX_SPEC_BYTES:
        raise _whole_error(f"the spec is {size} bytes; at most {MAX_SPEC_BYTES} are allowed")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _whole_error(
                f"the spec is not UTF-8 text (bad byte at offset {exc.start})"
            ) from None
    loader = SpecLoader(text)
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        raise _whole_error(_describe_yaml_error(exc)) from None
    except yaml.YAMLError as exc:
        raise _whole_error(f"the spec is not valid YAML: {exc}") from None
    except RecursionError:
        raise _whole_error("the spec is nested too deeply") from None
    finally:
        loader.dispose()
    if document is None:
        raise _whole_error("the spec is empty")
    return parse_application(document, tenant=tenant)


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    if exc.problem == "but found another document" and exc.problem_mark is not None:
        return (
            f"line {exc.problem_mark.line + 1}: the spec must be a single YAML document, "
            'but a second one starts here (remove the "---")'
        )
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = exc.problem or exc.context or "invalid YAML"
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    return f"YAML syntax error{where}: {problem}{context}"


def _count_values(document: object, limit: int) -> bool:
    """Whether `document` holds at most `limit` values (shared sub-documents count each time)."""
    stack = [document]
    count = 0
    while stack:
        value = stack.pop()
        count += 1
        if count > limit:
            return False
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return True


def parse_application(document: object, *, tenant: str = "system") -> Application:
    """Validate a loaded spec document and build its `Application`.

    `tenant` is not part of the spec: control sets it, site-local applications keep "system".
    Raises SpecError listing every problem with its path.
    """
    if not _count_values(document, MAX_SPEC_VALUES):
        raise _whole_error(f"the spec is too large: more than {MAX_SPEC_VALUES} values")
    application, errors = validate_application(document, tenant)
    if errors or application is None:
        raise SpecError(errors)
    return application


# -- writing -------------------------------------------------------------------------------


def application_to_document(application: Application) -> dict[str, Any]:
    """The canonical spec document of `application`: JSON-able, every setting explicit.

    ``parse_application(application_to_document(app), tenant=app.tenant) == app`` for every
    application that `parse_application` returns. The tenant is not part of the document.
    """
    return {
        "name": application.name,
        "version": application.version,
        "services": [_service_document(s) for s in application.services],
    }


def _service_document(service: Service) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": service.name, "mode": service.mode.value}
    if service.mode is Mode.REPLICATED:
        doc["replicas"] = service.replicas
    doc["priority"] = service.priority.label
    placement = service.placement
    doc["placement"] = {
        "match-host-labels": placement.match_host_labels,
        "devices": list(placement.devices),
        "gpus": placement.gpus,
    }
    resources: dict[str, Any] = {}
    if service.resources.cpus:
        resources["cpus"] = service.resources.cpus
    if service.resources.memory:
        resources["memory"] = format_size(service.resources.memory)
    doc["resources"] = resources
    doc["variables"] = [_variable_document(v) for v in service.variables]
    doc["volumes"] = [_volume_document(v) for v in service.volumes]
    doc["network"] = {
        "ingress": [
            {"port": i.port, "host-port": i.host_port, "protocol": i.protocol}
            for i in service.network.ingress
        ],
        "outbound": service.network.outbound.value,
    }
    doc["containers"] = [_container_document(c) for c in service.containers]
    return doc


def _secret_document(ref: SecretRef) -> dict[str, Any]:
    doc = {"vault": ref.vault, "secret": ref.secret}
    if ref.key is not None:
        doc["key"] = ref.key
    return doc


def _variable_document(variable: Variable) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": variable.name}
    if variable.value is not None:
        doc["value"] = variable.value
    if variable.value_from_secret is not None:
        doc["value-from-secret"] = _secret_document(variable.value_from_secret)
    return doc


def _volume_document(volume: Volume) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if volume.kind is VolumeKind.CONFIG_MAP:
        body = {"items": [{"name": item.name, "data": item.data} for item in volume.items]}
    elif volume.kind is VolumeKind.SECRET and volume.secret is not None:
        body = _secret_document(volume.secret)
        if volume.restart_on_change:  # only when set: older documents stay as they were
            body["restart-on-change"] = True
    return {"name": volume.name, volume.kind.value: body}


def _container_document(container: Container) -> dict[str, Any]:
    probes = {
        kind: _probe_document(probe)
        for kind, probe in (
            ("liveness", container.probes.liveness),
            ("readiness", container.probes.readiness),
            ("startup", container.probes.startup),
        )
        if probe is not None
    }
    doc: dict[str, Any] = {
        "name": container.name,
        "image": container.image,
        "cmd": None if container.cmd is None else list(container.cmd),
        "entrypoint": None if container.entrypoint is None else list(container.entrypoint),
        "env": dict(container.env),
        "mounts": [
            {"volume": m.volume, "path": m.path, "read-only": m.read_only} for m in container.mounts
        ],
        "probes": probes,
        "restart": container.restart.value,
    }
    if container.stop_timeout is not None:
        doc["stop-timeout"] = format_duration(container.stop_timeout)
    return doc


def _probe_document(probe: Probe) -> dict[str, Any]:
    action = probe.action
    doc: dict[str, Any]
    if isinstance(action, ExecProbe):
        doc = {"exec": list(action.command)}
    elif isinstance(action, HttpProbe):
        doc = {"http": {"port": action.port, "path": action.path}}
    else:
        doc = {"tcp": {"port": action.port}}
    doc["period"] = format_duration(probe.period)
    doc["timeout"] = format_duration(probe.timeout)
    doc["failure-threshold"] = probe.failure_threshold
    doc["initial-delay"] = format_duration(probe.initial_delay)
    return doc
