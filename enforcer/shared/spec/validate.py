"""Validation of a loaded application spec document (DESIGN.md, "Application spec").

`validate_application` walks the document once, builds the frozen model and records every
problem as a `FieldError` with its path (``services[0].containers[1].probes.liveness.period``)
instead of stopping at the first. `enforcer.shared.spec.parse` turns the errors into a `SpecError`.
"""

from __future__ import annotations

import difflib
import math
import posixpath
import re
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from enforcer.shared import labels
from enforcer.shared.spec.model import (
    Application,
    ConfigItem,
    Container,
    ExecProbe,
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
    TcpProbe,
    Variable,
    Volume,
    VolumeKind,
)
from enforcer.shared.spec.variables import SYSTEM_VARIABLES, is_variable_name, references
from enforcer.shared.units import format_size, parse_duration, parse_size

__all__ = [
    "MAX_VERSION_LENGTH",
    "MIN_MEMORY",
    "FieldError",
    "secret_variables",
    "validate_application",
]

MAX_VERSION_LENGTH = 128
MIN_MEMORY = 6 * 1024 * 1024  # Docker refuses smaller memory limits

_T = TypeVar("_T")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_LABEL_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_ACTIONS = ("exec", "http", "tcp")
_PROBE_KINDS = ("liveness", "readiness", "startup")  # in the order of Probes' fields
_SECRET_FIELDS = ("vault", "secret", "key")
_KINDS = {kind.value: kind for kind in VolumeKind}
_MODES = {mode.value: mode for mode in Mode}
_PRIORITIES = {priority.label: priority for priority in Priority}
_RESTARTS = {policy.value: policy for policy in RestartPolicy}
_OUTBOUND = {outbound.value: outbound for outbound in Outbound}
_PROTOCOLS = {"tcp": "tcp", "udp": "udp"}
_SERVICE_DEFAULTS = Service(name="", containers=())
_CONTAINER_DEFAULTS = Container(name="", image="")
_PROBE_DEFAULTS = Probe(action=TcpProbe(port=1))


@dataclass(frozen=True)
class FieldError:
    """One problem in a spec: where (``services[0].replicas``) and what."""

    path: str  # "" for the document as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


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


def _join(path: str, key: str) -> str:
    if _PLAIN_KEY.fullmatch(key) is None:
        escaped = key.replace("\\", "\\\\").replace('"', '\\"')
        return f'{path}["{escaped}"]'
    return f"{path}.{key}" if path else key


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f'a string ("{value}")' if len(value) <= 40 else "a string"
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "a mapping"
    return f"a {type(value).__name__} ({value})"  # YAML dates and times


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _names(value: object) -> list[tuple[int, str]]:
    """(index, name) of the mappings in list `value` that have a string name."""
    if not isinstance(value, list):
        return []
    return [
        (i, e["name"])
        for i, e in enumerate(value)
        if isinstance(e, dict) and isinstance(e.get("name"), str)
    ]


class _Fields:
    """The known fields of one mapping; each reader reports problems with the field's path and
    returns a fallback. Absent fields give the fallback silently (missing required fields are
    reported when the mapping is opened)."""

    def __init__(self, checker: _Checker, path: str, values: dict[str, object]) -> None:
        self.checker, self.path, self.values = checker, path, values

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def string(self, key: str, *, empty: bool = False) -> str:
        return self.checker.string(self.at(key), self.values[key], empty) if key in self else ""

    def name(self, key: str = "name") -> str:
        text = self.string(key)
        if text and (len(text) > 63 or _DNS_LABEL.fullmatch(text) is None):
            self.checker.error(
                self.at(key),
                f'"{text}" is not a valid name: use at most 63 lower-case letters, digits and '
                '"-", starting and ending with a letter or digit',
            )
        return text

    def integer(self, key: str, default: int, low: int, high: int | None = None) -> int:
        if key not in self:
            return default
        value = self.values[key]
        if not isinstance(value, int) or isinstance(value, bool):
            self.checker.error(self.at(key), f"expected a whole number, got {_describe(value)}")
            return default
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.checker.error(self.at(key), f"must be {bounds}, got {value}")
        return value

    def port(self, key: str, default: int = 1) -> int:
        return self.integer(key, default, 1, 65535)

    def choice(self, key: str, choices: Mapping[str, _T], default: _T) -> _T:
        value = self.values.get(key)
        if key not in self:
            return default
        if isinstance(value, str) and value in choices:
            return choices[value]
        shown = f'"{value}"' if isinstance(value, str) else _describe(value)
        self.checker.error(self.at(key), f"{shown} is not one of: {', '.join(choices)}")
        return default

    def duration(self, key: str, default: float, *, positive: bool = True) -> float:
        value, path = self.values.get(key), self.at(key)
        if key not in self:
            return default
        if _is_number(value):
            self.checker.error(path, f'{value} is not a duration: add a unit, e.g. "{value}s"')
            return default
        if not isinstance(value, str):
            self.checker.error(path, f"expected a duration such as 10s, got {_describe(value)}")
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.checker.error(path, str(exc))
            return default
        if positive and seconds <= 0:
            self.checker.error(path, "must be longer than 0s")
        return seconds

    def list(self, key: str, read: Callable[[str, object], _T | None]) -> list[_T]:
        return self.checker.items(self.at(key), self.values[key], read) if key in self else []

    def strings(self, key: str) -> tuple[str, ...]:
        read = self.checker.string
        return tuple(self.list(key, lambda path, value: read(path, value, True)))

    def sub(self, key: str, allowed: Collection[str], required: Collection[str] = ()) -> _Fields:
        """The nested mapping `key` (absent: an empty one)."""
        nested = self.checker.fields(self.at(key), self.values.get(key, {}), allowed, required)
        return nested if nested is not None else _Fields(self.checker, self.at(key), {})

    def unique_names(self, key: str, what: str) -> None:
        """Reports elements of list `key` whose name an earlier element already has."""
        named = _names(self.values.get(key))
        self.checker.unique(((f"{self.at(key)}[{i}].name", n, f'"{n}"') for i, n in named), what)


class _Checker:
    """Reads one document, recording every problem in `errors` instead of stopping."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.variables: frozenset[str] = frozenset()  # names ${NAME} may use in this service
        self.secret_variables: frozenset[str] = frozenset()  # of those, the secret-derived ones
        self.volumes: frozenset[str] = frozenset()  # volume names of this service

    def error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def fields(
        self, path: str, value: object, allowed: Collection[str], required: Collection[str] = ()
    ) -> _Fields | None:
        """Opens mapping `value`: unknown and missing fields are reported, nulls dropped."""
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_describe(value)}")
            return None
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                self.error(_join(path, str(key)), f"unknown field{hint}")
        for key in required:
            if key not in value:
                self.error(_join(path, key), "required field is missing")
        known = {
            k: v for k, v in value.items() if k in allowed and (v is not None or k in required)
        }
        return _Fields(self, path, known)

    def string(self, path: str, value: object, empty: bool = False) -> str:
        if isinstance(value, str):
            if not value and not empty:
                self.error(path, "must not be empty")
            return value
        scalar = value is not None and not isinstance(value, (list, dict))
        hint = "; put it in quotes" if scalar else ""
        self.error(path, f"expected a string, got {_describe(value)}{hint}")
        return ""

    def items(self, path: str, value: object, read: Callable[[str, object], _T | None]) -> list[_T]:
        """`read` applied to each element of list `value`, failures left out."""
        if not isinstance(value, list):
            self.error(path, f"expected a list, got {_describe(value)}")
            return []
        results = (read(f"{path}[{i}]", element) for i, element in enumerate(value))
        return [result for result in results if result is not None]

    def unique(self, entries: Iterable[tuple[str, Hashable, str]], what: str) -> None:
        """Reports entries (path, key, shown) whose key an earlier entry already used."""
        seen: dict[Hashable, str] = {}
        for path, key, shown in entries:
            if key in seen:
                self.error(path, f"duplicate {what} {shown} (first at {seen[key]})")
            elif key != "":
                seen[key] = path

    def references(self, path: str, text: str, *, secrets_allowed: bool = True) -> None:
        try:
            names = references(text)
        except ValueError as exc:
            self.error(path, str(exc))
            return
        if not secrets_allowed:
            for name in sorted(names & self.secret_variables):
                self.error(
                    path,
                    f"${{{name}}} holds a secret: use it only in a container's env, or mount "
                    "the secret as a secret volume (files here are not kept secret)",
                )
        for name in sorted(names - self.variables):
            self.error(
                path,
                f"undefined variable ${{{name}}}: define it in the service's variables "
                f"(system variables: {', '.join(SYSTEM_VARIABLES)})",
            )

    # - the spec ---------------------------------------------------------------------------

    def application(self, document: object, tenant: str) -> Application | None:
        if not isinstance(document, dict):
            self.error("", f"the spec must be a mapping, got {_describe(document)}")
            return None
        names = ("name", "version", "services")
        f = self.fields("", document, names, names)
        assert f is not None
        name, version = f.name(), f.string("version")
        if len(version) > MAX_VERSION_LENGTH:
            self.error("version", f"is longer than {MAX_VERSION_LENGTH} characters")
        services = f.list("services", self.service)
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
        elif "replicas" in f:
            self.error(f.at("replicas"), f'cannot be set with mode "{mode.value}"')
        priority = f.choice("priority", _PRIORITIES, d.priority)
        placement = self.placement(f.sub("placement", ("match-host-labels", "devices", "gpus")))
        resources = self.resources(f.sub("resources", ("cpus", "memory")))
        variables = f.list("variables", self.variable)
        f.unique_names("variables", "variable name")
        declared = (n for _, n in _names(f.values.get("variables")))
        self.variables = frozenset(SYSTEM_VARIABLES).union(declared)
        self.secret_variables = secret_variables(variables)
        volumes = f.list("volumes", self.volume)
        f.unique_names("volumes", "volume name")
        self.volumes = frozenset(n for _, n in _names(f.values.get("volumes")))
        network = self.network(f.sub("network", ("ingress", "outbound")))
        containers = f.list("containers", self.container)
        if f.values.get("containers") == []:
            self.error(f.at("containers"), "at least one container is required")
        f.unique_names("containers", "container name")
        return Service(
            name, tuple(containers), mode, replicas, priority, placement, resources,
            tuple(variables), tuple(volumes), network,
        )  # fmt: skip

    def placement(self, f: _Fields) -> Placement:
        expression = f.string("match-host-labels", empty=True)
        try:
            labels.parse(expression)
        except labels.LabelSyntaxError as exc:
            self.error(f.at("match-host-labels"), str(exc))
        devices = f.strings("devices")
        for i, device in enumerate(devices):
            if _LABEL_WORD.fullmatch(device) is None:
                message = f'"{device}" is not a device label: use letters, digits and . _ / -'
                self.error(f"{f.at('devices')}[{i}]", message)
        self.unique(
            ((f"{f.at('devices')}[{i}]", d, f'"{d}"') for i, d in enumerate(devices)), "device"
        )
        return Placement(expression, devices, f.integer("gpus", 0, 0))

    def resources(self, f: _Fields) -> Resources:
        cpus, memory = f.values.get("cpus", 0.0), f.values.get("memory", 0)
        if not isinstance(cpus, (int, float)) or isinstance(cpus, bool):
            self.error(f.at("cpus"), f"expected a number, got {_describe(cpus)}")
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
        if name and not is_variable_name(name):
            message = f'"{name}" is not a valid variable name: use letters, digits and "_"'
            self.error(f.at("name"), message + ", not starting with a digit")
        elif name.startswith("SYS_"):
            self.error(f.at("name"), "names starting with SYS_ are reserved for the system")
        if ("value" in f) == ("value-from-secret" in f):
            self.error(path, 'give exactly one of "value" and "value-from-secret"')
        text = f.string("value", empty=True) if "value" in f else None
        ref = None
        if "value-from-secret" in f:
            ref = self.secret(
                f.at("value-from-secret"), f.values["value-from-secret"], key_required=True
            )
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
            items = config.list("items", self.config_item)
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
                shown = _describe(restart)
                self.error(_join(path, "restart-on-change"), f"expected true or false, got {shown}")
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
        data = f.string("data", empty=True)
        self.references(f.at("data"), data, secrets_allowed=False)
        return ConfigItem(name, data)

    def network(self, f: _Fields) -> Network:
        ingress = f.list("ingress", self.ingress)
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

    def container(self, path: str, value: object) -> Container | None:
        allowed = (
            "name", "image", "cmd", "entrypoint", "env", "mounts", "probes", "restart",
            "stop-timeout",
        )  # fmt: skip
        f = self.fields(path, value, allowed, ("name", "image"))
        if f is None:
            return None
        d = _CONTAINER_DEFAULTS
        name, image = f.name(), f.string("image")
        if any(char.isspace() for char in image):
            self.error(f.at("image"), f'"{image}" is not an image reference: it contains spaces')
        mounts = f.list("mounts", self.mount)
        entries = (
            (f"{f.at('mounts')}[{i}].path", posixpath.normpath(m.path), f'"{m.path}"')
            for i, m in enumerate(mounts)
        )
        self.unique(entries, "mount path")
        probes = f.sub("probes", ("liveness", "readiness", "startup"))
        return Container(
            name=name,
            image=image,
            cmd=self.command(f, "cmd"),
            entrypoint=self.command(f, "entrypoint"),
            env=self.env(f.at("env"), f.values.get("env", {})),
            mounts=tuple(mounts),
            probes=Probes(*(self.probe(probes.at(k), probes.values.get(k)) for k in _PROBE_KINDS)),
            restart=f.choice("restart", _RESTARTS, d.restart),
            stop_timeout=f.duration("stop-timeout", d.stop_timeout, positive=False),
        )

    def command(self, f: _Fields, key: str) -> tuple[str, ...] | None:
        if key not in f:
            return None
        if not isinstance(f.values[key], list):
            self.error(
                f.at(key), f"expected a list of strings or null, got {_describe(f.values[key])}"
            )
            return None
        words = f.strings(key)
        for i, word in enumerate(words):
            self.references(f"{f.at(key)}[{i}]", word, secrets_allowed=False)
        return words

    def env(self, path: str, value: object) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping of names to strings, got {_describe(value)}")
            return ()
        pairs: list[tuple[str, str]] = []
        for key, raw in value.items():
            at = _join(path, str(key))
            if not isinstance(key, str) or not key or "=" in key or "\0" in key:
                self.error(at, 'is not a valid environment variable name (empty or has "=")')
                continue
            text = self.string(at, raw, True)
            self.references(at, text)
            pairs.append((key, text))
        return tuple(sorted(pairs))

    def mount(self, path: str, value: object) -> Mount | None:
        f = self.fields(path, value, ("volume", "path", "read-only"), ("volume", "path"))
        if f is None:
            return None
        volume, target = f.string("volume"), f.string("path")
        if volume and volume not in self.volumes:
            self.error(f.at("volume"), f'volume "{volume}" is not defined in the service')
        if target and not target.startswith("/"):
            self.error(f.at("path"), f'"{target}" is not an absolute path')
        elif ".." in target.split("/"):
            self.error(f.at("path"), f'"{target}" must not contain ".."')
        elif target and posixpath.normpath(target) in ("/", "//"):
            self.error(f.at("path"), 'cannot mount over "/"')
        read_only = f.values.get("read-only", False)
        if not isinstance(read_only, bool):
            self.error(f.at("read-only"), f"expected true or false, got {_describe(read_only)}")
            read_only = False
        return Mount(volume, target, read_only)

    def probe(self, path: str, value: object) -> Probe | None:
        if value is None:
            return None
        allowed = (*_ACTIONS, "period", "timeout", "failure-threshold", "initial-delay")
        f = self.fields(path, value, allowed)
        if f is None:
            return None
        d = _PROBE_DEFAULTS
        period, timeout = f.duration("period", d.period), f.duration("timeout", d.timeout)
        initial_delay = f.duration("initial-delay", d.initial_delay, positive=False)
        threshold = f.integer("failure-threshold", d.failure_threshold, 1)
        given = [key for key in _ACTIONS if key in f]
        if len(given) != 1:
            found = f" (found {' and '.join(given)})" if given else ""
            self.error(path, f"give exactly one of: exec, http, tcp{found}")
            return None
        action: ExecProbe | HttpProbe | TcpProbe
        if given[0] == "exec":
            action = ExecProbe(f.strings("exec"))
            if f.values["exec"] == []:
                self.error(f.at("exec"), "the command must not be empty")
        elif given[0] == "http":
            http = f.sub("http", ("port", "path"), ("port",))
            action = HttpProbe(http.port("port"), http.string("path") if "path" in http else "/")
            if action.path and not action.path.startswith("/"):
                self.error(http.at("path"), f'"{action.path}" must start with "/"')
        else:
            action = TcpProbe(f.sub("tcp", ("port",), ("port",)).port("port"))
        return Probe(action, period, timeout, threshold, initial_delay)
