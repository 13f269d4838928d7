"""Validation of a loaded application spec document (DESIGN.md, "Application spec").

`validate_application` walks the document once, builds the frozen model and records every
problem as a `FieldError` with its path (``services[0].containers[1].probes.liveness.period``)
instead of stopping at the first. `enforcer.shared.spec.parse` turns the errors into a `SpecError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from enforcer.shared import labels
from enforcer.shared.spec.containers import container
from enforcer.shared.spec.fields import (
    FieldError,
    Fields,
    Reader,
    describe,
    has_control,
    join,
    names,
)
from enforcer.shared.spec.limits import (
    MAX_CONFIG_ITEMS,
    MAX_CONTAINERS,
    MAX_DEVICES,
    MAX_FILE_LENGTH,
    MAX_INGRESS,
    MAX_REPLICAS,
    MAX_SERVICES,
    MAX_VARIABLE_NAME_LENGTH,
    MAX_VARIABLES,
    MAX_VOLUMES,
    SECRET_VALUE_LENGTH,
    SYSTEM_VALUE_LENGTH,
)
from enforcer.shared.spec.model import (
    Application,
    ConfigItem,
    Ingress,
    Mode,
    Network,
    Outbound,
    Placement,
    Priority,
    Resources,
    SecretRef,
    Service,
    Variable,
    Volume,
    VolumeKind,
)
from enforcer.shared.spec.variables import SYSTEM_VARIABLES, is_variable_name, references
from enforcer.shared.units import format_size, parse_size

__all__ = [
    "MAX_VERSION_LENGTH",
    "MIN_MEMORY",
    "FieldError",
    "secret_variables",
    "validate_application",
]

MAX_VERSION_LENGTH = 128
MIN_MEMORY = 6 * 1024 * 1024  # Docker refuses smaller memory limits

_LABEL_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_SECRET_FIELDS = ("vault", "secret", "key")
_KINDS = {kind.value: kind for kind in VolumeKind}
_MODES = {mode.value: mode for mode in Mode}
_PRIORITIES = {priority.label: priority for priority in Priority}
_OUTBOUND = {outbound.value: outbound for outbound in Outbound}
_PROTOCOLS = {"tcp": "tcp", "udp": "udp"}
_SERVICE_DEFAULTS = Service(name="", containers=())


def validate_application(
    document: object, tenant: str = "system"
) -> tuple[Application | None, list[FieldError]]:
    """The application in `document` and every problem found; use the application only when
    there are no problems (it then is fully valid)."""
    checker = _Checker()
    application = checker.application(document, tenant)
    return application, checker.errors


def secret_variables(variables: Iterable[Variable]) -> frozenset[str]:
    """The variables whose value is, or is built from, a secret (in declaration order)."""
    found: set[str] = set()
    for var in variables:
        if var.value_from_secret is not None:
            found.add(var.name)
        elif var.value is not None:
            try:
                if references(var.value) & found:
                    found.add(var.name)
            except ValueError:
                continue
    return frozenset(found)


class _Checker(Reader):
    """Reads one application document (the containers: `enforcer.shared.spec.containers`)."""

    def application(self, document: object, tenant: str) -> Application | None:
        if not isinstance(document, dict):
            self.error("", f"the spec must be a mapping, got {describe(document)}")
            return None
        names = ("name", "version", "services")
        f = self.fields("", document, names, names)
        assert f is not None
        name, version = f.name(), f.string("version")
        if len(version) > MAX_VERSION_LENGTH:
            self.error("version", f"is longer than {MAX_VERSION_LENGTH} characters")
        services = f.list("services", self.service, MAX_SERVICES)
        if f.values.get("services") == []:
            self.error("services", "at least one service is required")
        f.unique_names("services", "service name")
        return Application(name, version, tuple(services), tenant)

    def service(self, path: str, value: object) -> Service | None:
        allowed = (
            "name", "mode", "replicas", "priority", "placement", "resources", "variables",
            "volumes", "network", "containers",
        )  # fmt: skip
        f = self.fields(path, value, allowed, ("name", "containers"))
        if f is None:
            return None
        d = _SERVICE_DEFAULTS
        name, mode = f.name(), f.choice("mode", _MODES, d.mode)
        replicas = d.replicas
        if mode is Mode.REPLICATED:
            replicas = f.integer("replicas", d.replicas, 0)
            if replicas > MAX_REPLICAS:
                message = f"must be at most {MAX_REPLICAS}, got {replicas}"
                self.error(f.at("replicas"), message)
        elif "replicas" in f:
            self.error(f.at("replicas"), f'cannot be set with mode "{mode.value}"')
        priority = f.choice("priority", _PRIORITIES, d.priority)
        placement = self.placement(f.sub("placement", ("match-host-labels", "devices", "gpus")))
        resources = self.resources(f.sub("resources", ("cpus", "memory")))
        # A variable's value may use the system variables and the variables above it (they
        # are expanded in order); everything else may use every variable.
        self.declared = frozenset(n for _, n in names(f.values.get("variables")))
        self.variables = frozenset(SYSTEM_VARIABLES)
        self.lengths = dict.fromkeys(SYSTEM_VARIABLES, SYSTEM_VALUE_LENGTH)
        variables = f.list("variables", self.variable, MAX_VARIABLES)
        f.unique_names("variables", "variable name")
        self.variables = frozenset(SYSTEM_VARIABLES) | self.declared
        self.secret_variables = secret_variables(variables)
        volumes = f.list("volumes", self.volume, MAX_VOLUMES)
        f.unique_names("volumes", "volume name")
        self.volumes = frozenset(n for _, n in names(f.values.get("volumes")))
        network = self.network(f.sub("network", ("ingress", "outbound")))
        containers = f.list("containers", lambda p, v: container(self, p, v), MAX_CONTAINERS)
        if f.values.get("containers") == []:
            self.error(f.at("containers"), "at least one container is required")
        f.unique_names("containers", "container name")
        return Service(
            name, tuple(containers), mode, replicas, priority, placement, resources,
            tuple(variables), tuple(volumes), network,
        )  # fmt: skip

    def placement(self, f: Fields) -> Placement:
        expression = f.string("match-host-labels", empty=True)
        try:
            labels.parse(expression)
        except labels.LabelSyntaxError as exc:
            self.error(f.at("match-host-labels"), str(exc))
        devices = f.strings("devices", MAX_DEVICES)
        raw = f.values.get("devices")
        for i, device in enumerate(devices):
            if _LABEL_WORD.fullmatch(device) is None and not (
                isinstance(raw, list) and isinstance(raw[i], str) and has_control(raw[i])
            ):  # a control character is reported already
                message = f'"{device}" is not a device label: use letters, digits and . _ / -'
                self.error(f"{f.at('devices')}[{i}]", message)
        self.unique(
            ((f"{f.at('devices')}[{i}]", d, f'"{d}"') for i, d in enumerate(devices)), "device"
        )
        return Placement(expression, devices, f.integer("gpus", 0, 0))

    def resources(self, f: Fields) -> Resources:
        cpus, memory = f.values.get("cpus", 0.0), f.values.get("memory", 0)
        if not isinstance(cpus, (int, float)) or isinstance(cpus, bool):
            self.error(f.at("cpus"), f"expected a number, got {describe(cpus)}")
            cpus = 0.0
        elif "cpus" in f and not (math.isfinite(cpus) and cpus > 0):
            self.error(f.at("cpus"), f"must be more than 0, got {cpus}")
        try:
            memory = parse_size(memory)  # type: ignore[arg-type]
        except ValueError as exc:
            self.error(f.at("memory"), str(exc))
            memory = 0
        else:
            if "memory" in f and memory < MIN_MEMORY:
                minimum = format_size(MIN_MEMORY)
                message = f"must be at least {minimum} (Docker's minimum), got {memory} bytes"
                self.error(f.at("memory"), message)
        return Resources(cpus=float(cpus), memory=memory)

    def secret(self, path: str, value: object, *, key_required: bool) -> SecretRef | None:
        required = _SECRET_FIELDS if key_required else _SECRET_FIELDS[:2]
        f = self.fields(path, value, _SECRET_FIELDS, required)
        if f is None:
            return None
        key = f.string("key") if "key" in f else None
        return SecretRef(f.string("vault"), f.string("secret"), key)

    def variable(self, path: str, value: object) -> Variable | None:
        f = self.fields(path, value, ("name", "value", "value-from-secret"), ("name",))
        if f is None:
            return None
        name = f.string("name")
        valid = False
        if len(name) > MAX_VARIABLE_NAME_LENGTH:
            message = f"is {len(name)} characters long; at most {MAX_VARIABLE_NAME_LENGTH}"
            self.error(f.at("name"), message + " are allowed")
        elif name and not is_variable_name(name):
            message = f'"{name}" is not a valid variable name: use letters, digits and "_"'
            self.error(f.at("name"), message + ", not starting with a digit")
        elif name.startswith("SYS_"):
            self.error(f.at("name"), "names starting with SYS_ are reserved for the system")
        else:
            valid = bool(name)
        if ("value" in f) == ("value-from-secret" in f):
            self.error(path, 'give exactly one of "value" and "value-from-secret"')
        text = f.string("value", empty=True, multiline=True) if "value" in f else None
        length = SECRET_VALUE_LENGTH
        if text is not None:
            length = self.references(f.at("value"), text)
        ref = None
        if "value-from-secret" in f:
            ref = self.secret(
                f.at("value-from-secret"), f.values["value-from-secret"], key_required=True
            )
        if valid and name not in self.variables:  # a duplicate keeps the first one's length
            self.variables |= {name}
            self.lengths[name] = length
        return Variable(name, text, ref)

    def volume(self, path: str, value: object) -> Volume | None:
        f = self.fields(path, value, ("name", *_KINDS), ("name",))
        if f is None:
            return None
        given = [_KINDS[key] for key in _KINDS if isinstance(value, dict) and key in value]
        if len(given) != 1:
            self.error(path, f"give exactly one of: {', '.join(_KINDS)}")
            return None
        name, kind = f.name(), given[0]
        if kind is VolumeKind.SECRET:
            return self.secret_volume(name, f.at(kind.value), f.values.get(kind.value))
        if kind is VolumeKind.CONFIG_MAP:
            config = f.sub(kind.value, ("items",))
            items = config.list("items", self.config_item, MAX_CONFIG_ITEMS)
            config.unique_names("items", "file name")
            return Volume(name, kind, items=tuple(items))
        f.sub(kind.value, ())  # ephemeral and persistent take no settings
        return Volume(name, kind)

    def secret_volume(self, name: str, path: str, value: object) -> Volume:
        restart = False
        if isinstance(value, dict) and "restart-on-change" in value:
            value = dict(value)
            restart = value.pop("restart-on-change")
            if not isinstance(restart, bool):
                shown = describe(restart)
                self.error(join(path, "restart-on-change"), f"expected true or false, got {shown}")
                restart = False
        ref = self.secret(path, value, key_required=False)
        return Volume(name, VolumeKind.SECRET, secret=ref, restart_on_change=restart)

    def config_item(self, path: str, value: object) -> ConfigItem | None:
        f = self.fields(path, value, ("name", "data"), ("name", "data"))
        if f is None:
            return None
        name = f.string("name")
        if name in (".", "..") or "/" in name or "\0" in name or len(name) > 255:
            message = (
                f'"{name}" is not a file name: no "/", not "." or "..", at most 255 characters'
            )
            self.error(f.at("name"), message)
        data = f.string("data", empty=True, multiline=True)
        self.references(f.at("data"), data, secrets_allowed=False, limit=MAX_FILE_LENGTH)
        return ConfigItem(name, data)

    def network(self, f: Fields) -> Network:
        ingress = f.list("ingress", self.ingress, MAX_INGRESS)
        self.unique(
            (
                (
                    f"{f.at('ingress')}[{i}].host-port",
                    (e.host_port, e.protocol),
                    f"{e.host_port}/{e.protocol}",
                )
                for i, e in enumerate(ingress)
            ),
            "host-port",
        )
        return Network(tuple(ingress), f.choice("outbound", _OUTBOUND, Network().outbound))

    def ingress(self, path: str, value: object) -> Ingress | None:
        f = self.fields(path, value, ("port", "host-port", "protocol"), ("port",))
        if f is None:
            return None
        port = f.port("port")
        return Ingress(port, f.port("host-port", port), f.choice("protocol", _PROTOCOLS, "tcp"))
