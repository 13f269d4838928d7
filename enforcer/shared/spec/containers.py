"""Reading a service's containers: image, command, env, mounts and probes."""

from __future__ import annotations

import posixpath

from enforcer.shared.spec.fields import Fields, Reader, describe, has_control, join
from enforcer.shared.spec.limits import (
    MAX_ARGS,
    MAX_ENV,
    MAX_ENV_NAME_LENGTH,
    MAX_IMAGE_LENGTH,
    MAX_MOUNTS,
)
from enforcer.shared.spec.model import (
    Container,
    ExecProbe,
    HttpProbe,
    Mount,
    Probe,
    Probes,
    RestartPolicy,
    TcpProbe,
)

__all__ = ["container"]

_ACTIONS = ("exec", "http", "tcp")
_PROBE_KINDS = ("liveness", "readiness", "startup")  # in the order of Probes' fields
_RESTARTS = {policy.value: policy for policy in RestartPolicy}
_CONTAINER_DEFAULTS = Container(name="", image="")
_PROBE_DEFAULTS = Probe(action=TcpProbe(port=1))


def container(r: Reader, path: str, value: object) -> Container | None:
    allowed = (
        "name", "image", "cmd", "entrypoint", "env", "mounts", "probes", "restart",
        "stop-timeout",
    )  # fmt: skip
    f = r.fields(path, value, allowed, ("name", "image"))
    if f is None:
        return None
    d = _CONTAINER_DEFAULTS
    name, image = f.name(), f.string("image")
    if len(image) > MAX_IMAGE_LENGTH:
        message = f"is {len(image)} characters long; at most {MAX_IMAGE_LENGTH} are allowed"
        r.error(f.at("image"), message)
    elif any(char.isspace() for char in image):
        r.error(f.at("image"), f'"{image}" is not an image reference: it contains spaces')
    mounts = f.list("mounts", lambda p, v: _mount(r, p, v), MAX_MOUNTS)
    entries = (
        (f"{f.at('mounts')}[{i}].path", posixpath.normpath(m.path), f'"{m.path}"')
        for i, m in enumerate(mounts)
    )
    r.unique(entries, "mount path")
    probes = f.sub("probes", ("liveness", "readiness", "startup"))
    return Container(
        name=name,
        image=image,
        cmd=_command(r, f, "cmd"),
        entrypoint=_command(r, f, "entrypoint"),
        env=_env(r, f.at("env"), f.values.get("env", {})),
        mounts=tuple(mounts),
        probes=Probes(*(_probe(r, probes.at(k), probes.values.get(k)) for k in _PROBE_KINDS)),
        restart=f.choice("restart", _RESTARTS, d.restart),
        stop_timeout=(
            f.duration("stop-timeout", 0.0, positive=False) if "stop-timeout" in f else None
        ),
    )


def _command(r: Reader, f: Fields, key: str) -> tuple[str, ...] | None:
    if key not in f:
        return None
    if not isinstance(f.values[key], list):
        r.error(f.at(key), f"expected a list of strings or null, got {describe(f.values[key])}")
        return None
    words = f.strings(key, MAX_ARGS, multiline=True)
    for i, word in enumerate(words):
        r.references(f"{f.at(key)}[{i}]", word, secrets_allowed=False)
    return words


def _env(r: Reader, path: str, value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        r.error(path, f"expected a mapping of names to strings, got {describe(value)}")
        return ()
    if len(value) > MAX_ENV:
        r.error(path, f"has {len(value)} entries; at most {MAX_ENV} are allowed")
        return ()
    pairs: list[tuple[str, str]] = []
    for key, raw in value.items():
        at = join(path, str(key))
        if not isinstance(key, str) or not key or "=" in key or has_control(key):
            message = 'is not a valid environment variable name (empty, has "=" or a control'
            r.error(at, message + " character)")
            continue
        if len(key) > MAX_ENV_NAME_LENGTH:
            r.error(at, f"the name is longer than {MAX_ENV_NAME_LENGTH} characters")
            continue
        text = r.string(at, raw, True, multiline=True)
        r.references(at, text)
        pairs.append((key, text))
    return tuple(sorted(pairs))


def _mount(r: Reader, path: str, value: object) -> Mount | None:
    f = r.fields(path, value, ("volume", "path", "read-only"), ("volume", "path"))
    if f is None:
        return None
    volume, target = f.string("volume"), f.string("path")
    if volume and volume not in r.volumes:
        r.error(f.at("volume"), f'volume "{volume}" is not defined in the service')
    if target and not target.startswith("/"):
        r.error(f.at("path"), f'"{target}" is not an absolute path')
    elif ".." in target.split("/"):
        r.error(f.at("path"), f'"{target}" must not contain ".."')
    elif target and posixpath.normpath(target) in ("/", "//"):
        r.error(f.at("path"), 'cannot mount over "/"')
    read_only = f.values.get("read-only", False)
    if not isinstance(read_only, bool):
        r.error(f.at("read-only"), f"expected true or false, got {describe(read_only)}")
        read_only = False
    return Mount(volume, target, read_only)


def _probe(r: Reader, path: str, value: object) -> Probe | None:
    if value is None:
        return None
    allowed = (*_ACTIONS, "period", "timeout", "failure-threshold", "initial-delay")
    f = r.fields(path, value, allowed)
    if f is None:
        return None
    d = _PROBE_DEFAULTS
    period, timeout = f.duration("period", d.period), f.duration("timeout", d.timeout)
    initial_delay = f.duration("initial-delay", d.initial_delay, positive=False)
    threshold = f.integer("failure-threshold", d.failure_threshold, 1)
    given = [key for key in _ACTIONS if key in f]
    if len(given) != 1:
        found = f" (found {' and '.join(given)})" if given else ""
        r.error(path, f"give exactly one of: exec, http, tcp{found}")
        return None
    action: ExecProbe | HttpProbe | TcpProbe
    if given[0] == "exec":
        action = ExecProbe(f.strings("exec", MAX_ARGS, multiline=True))
        if f.values["exec"] == []:
            r.error(f.at("exec"), "the command must not be empty")
    elif given[0] == "http":
        http = f.sub("http", ("port", "path"), ("port",))
        action = HttpProbe(http.port("port"), http.string("path") if "path" in http else "/")
        if action.path and not action.path.startswith("/"):
            r.error(http.at("path"), f'"{action.path}" must start with "/"')
    else:
        action = TcpProbe(f.sub("tcp", ("port",), ("port",)).port("port"))
    return Probe(action, period, timeout, threshold, initial_delay)
