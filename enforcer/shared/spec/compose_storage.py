"""A Compose service's ports, volumes, secrets, devices and networks as the spec's ingress,
volumes, mounts, device labels and outbound setting (docs/compose.md)."""

from __future__ import annotations

import fnmatch
import posixpath
import re
from typing import Any

from enforcer.shared.spec.compose_values import Context
from enforcer.shared.spec.fields import describe
from enforcer.shared.spec.limits import MAX_INGRESS

__all__ = ["devices", "networks", "ports", "secrets", "volumes"]

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
_PUBLIC = ("", "0.0.0.0", "::")
_BUILTIN_DEVICES = {"/dev/video*": "camera"}
_GPU_NODES = ("/dev/nvidia*", "/dev/dri/*")
_VOLUME_MODES = {"ro", "rw", "z", "Z", "nocopy", "cached", "delegated", "consistent"}
BIND_REASON = (
    "Edgeward does not mount host paths into containers (a path is not on every host of a "
    "site, and it would reach outside the application's tenant); use a named volume "
    "(persistent), or a config-map or secret volume in an application spec"
)


def dns_name(text: str, fallback: str) -> str:
    """`text` as a spec name: lower case, other characters as "-", at most 63."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return name or fallback


# -- ports -----------------------------------------------------------------------------------


def ports(ctx: Context, path: str, value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        ctx.error(path, f"expected a list, got {describe(value)}")
        return []
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(value):
        at = f"{path}[{i}]"
        if isinstance(entry, dict):
            for key in entry:
                if key not in ("target", "published", "protocol", "host_ip", "mode"):
                    ctx.ignored(f"{at}.{key}")
            if "target" not in entry:
                ctx.error(at, "target (the container's port) is required")
                continue
            published = entry.get("published")
            out += _publish(
                ctx,
                at,
                str(entry.get("host_ip", "")),
                "" if published is None else str(published),
                str(entry["target"]),
                str(entry.get("protocol", "tcp")),
            )
        elif isinstance(entry, (str, int)) and not isinstance(entry, bool):
            out += _short_port(ctx, at, str(entry))
        else:
            ctx.error(at, f'expected a port ("8080:80") or a mapping, got {describe(entry)}')
    if len(out) > MAX_INGRESS:
        ctx.error(path, f"publishes {len(out)} ports; at most {MAX_INGRESS} are allowed")
        return []
    return out


def _short_port(ctx: Context, at: str, text: str) -> list[dict[str, Any]]:
    rest, _, protocol = text.partition("/")
    ip = ""
    if rest.startswith("["):  # [::1]:8080:80
        ip, _, rest = rest[1:].partition("]")
        rest = rest.removeprefix(":")
        parts = ["", *rest.split(":")] if rest.count(":") == 0 else rest.split(":")
        parts = parts[-2:]
    else:
        parts = rest.split(":")
        if len(parts) == 3:
            ip, parts = parts[0], parts[1:]
    if len(parts) == 1:
        parts = ["", parts[0]]
    if len(parts) != 2:
        ctx.error(
            at, f'"{text}" is not a port: write CONTAINER, HOST:CONTAINER or IP:HOST:CONTAINER'
        )
        return []
    return _publish(ctx, at, ip, parts[0], parts[1], protocol or "tcp")


def _port_range(ctx: Context, at: str, text: str) -> range | None:
    match = _RANGE.fullmatch(text.strip())
    if match is not None:
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if 1 <= low <= high <= 65535:
            return range(low, high + 1)
    ctx.error(at, f'"{text}" is not a port or a port range (1 to 65535, such as 8000-8010)')
    return None


def _publish(
    ctx: Context, at: str, ip: str, host: str, container: str, protocol: str
) -> list[dict[str, Any]]:
    if protocol not in ("tcp", "udp"):
        ctx.error(at, f'protocol "{protocol}" is not supported: use tcp or udp')
        return []
    if ip not in _PUBLIC:
        ctx.error(
            at,
            f"publishing on the address {ip} alone is not supported: Edgeward publishes "
            "on every address of the host (leave the address out, or do not publish)",
        )
        return []
    targets = _port_range(ctx, at, container)
    if targets is None:
        return []
    if not host:
        ctx.warn(
            at,
            f'"{container}" has no host port, so it is not published: Edgeward does '
            "not pick random host ports (the application's services reach it by name)",
        )
        return []
    published = _port_range(ctx, at, host)
    if published is None:
        return []
    if len(published) != len(targets):
        ctx.error(
            at,
            f'the host ports "{host}" and the container ports "{container}" must be '
            "ranges of the same length (Edgeward does not pick a free port from a range)",
        )
        return []
    return [
        {"port": port, "host-port": host_port, "protocol": protocol}
        for port, host_port in zip(targets, published, strict=True)
    ]


# -- volumes ---------------------------------------------------------------------------------


def volumes(
    ctx: Context, path: str, value: object, taken: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The spec volumes and the container's mounts (named apart from the volumes `taken`)."""
    if not isinstance(value, list):
        ctx.error(path, f"expected a list, got {describe(value)}")
        return [], []
    specs: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for i, entry in enumerate(value):
        at = f"{path}[{i}]"
        parsed = _volume_entry(ctx, at, entry)
        if parsed is None:
            continue
        kind, source, target, read_only = parsed
        if kind == "bind":
            ctx.error(at, f'"{source}" is a bind mount of a host path: {BIND_REASON}')
            continue
        if not target.startswith("/"):
            ctx.error(at, f'the target "{target}" is not an absolute path')
            continue
        if kind == "volume" and source:
            if source not in ctx.volumes:
                ctx.error(at, f'volume "{source}" is not defined in the top-level volumes')
                continue
            body: dict[str, Any] = {"persistent": {}}
            name = dns_name(source, "data")
        else:  # an anonymous volume or a tmpfs: scratch space of the instance
            name, body = dns_name(target, "scratch"), {"ephemeral": {}}
            if kind == "volume":
                ctx.warn(
                    at, "an anonymous volume becomes an ephemeral volume, removed with the instance"
                )
        same = [v for v in [*(taken or []), *specs] if v["name"] == name]
        if same and "persistent" in body and "persistent" in same[0]:  # mounted twice
            mounts.append({"volume": name, "path": target, "read-only": read_only})
            continue
        if same:
            name = f"{name[:58]}-{i}"
        specs.append({"name": name, **body})
        mounts.append({"volume": name, "path": target, "read-only": read_only})
    return specs, mounts


def _volume_entry(ctx: Context, at: str, entry: object) -> tuple[str, str, str, bool] | None:
    """(kind, source, target, read-only) of one entry of a service's volumes."""
    if isinstance(entry, str):
        parts = entry.split(":")
        if len(parts) == 1:
            return "volume", "", parts[0], False
        if len(parts) > 3:
            ctx.error(at, f'"{entry}" is not a volume: write NAME:PATH[:ro]')
            return None
        source, target = parts[0], parts[1]
        modes = parts[2].split(",") if len(parts) == 3 else []
        for mode in modes:
            if mode not in _VOLUME_MODES:
                ctx.error(at, f'"{mode}" is not a volume mode: use ro or rw')
                return None
            if mode not in ("ro", "rw"):
                ctx.ignored(at, f'the mode "{mode}" is not supported')
        bind = source.startswith((".", "/", "~")) or "/" in source
        return ("bind" if bind else "volume"), source, target, "ro" in modes
    long = ctx.mapping(at, entry)
    if long is None:
        return None
    kind = long.get("type", "volume")
    for key in long:
        if key not in ("type", "source", "target", "read_only"):
            ctx.ignored(f"{at}.{key}")
    if kind not in ("volume", "bind", "tmpfs"):
        ctx.error(f"{at}.type", f'"{kind}" volumes are not supported: use volume or tmpfs')
        return None
    inside = long.get("target")
    if not isinstance(inside, str):
        ctx.error(f"{at}.target", f"expected the path in the container, got {describe(inside)}")
        return None
    read_only = long.get("read_only", False)
    return str(kind), str(long.get("source") or ""), inside, read_only is True


# -- secrets ---------------------------------------------------------------------------------


def secrets(
    ctx: Context, path: str, value: object
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Secret volumes (one per directory the secrets appear in) and their mounts."""
    if not isinstance(value, list):
        ctx.error(path, f"expected a list, got {describe(value)}")
        return [], []
    by_dir: dict[str, dict[tuple[str, str], list[str]]] = {}
    for i, entry in enumerate(value):
        at = f"{path}[{i}]"
        if isinstance(entry, dict):
            for key in entry:
                if key not in ("source", "target"):
                    ctx.ignored(f"{at}.{key}", "not supported (the files are 0400)")
            source, target = entry.get("source"), entry.get("target", entry.get("source"))
        else:
            source = target = entry
        if not isinstance(source, str) or not isinstance(target, str):
            ctx.error(at, f"expected a secret's name, got {describe(entry)}")
            continue
        ref = _vault_ref(ctx, source)
        if ref is None:
            continue
        full = target if target.startswith("/") else posixpath.join("/run/secrets", target)
        directory, key = posixpath.split(posixpath.normpath(full))
        by_dir.setdefault(directory, {}).setdefault(ref, []).append(key)
    specs: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for directory, refs in by_dir.items():
        if len(refs) > 1:
            named = ", ".join(f"{v}/{s}" for v, s in refs)
            ctx.error(
                path,
                f"the files in {directory} come from several vault secrets ({named}): "
                "the files of one directory come from one secret, one file per key",
            )
            continue
        (vault, secret), keys = next(iter(refs.items()))
        name = "secrets" if directory == "/run/secrets" else dns_name(directory, "secrets")
        body: dict[str, Any] = {"vault": vault, "secret": secret}
        if len(set(keys)) == 1:
            body["key"] = keys[0]
        specs.append({"name": name, "secret": body})
        mounts.append({"volume": name, "path": directory, "read-only": True})
    return specs, mounts


def _vault_ref(ctx: Context, source: str) -> tuple[str, str] | None:
    at = f"secrets.{source}"
    definition = ctx.secrets.get(source)
    if definition is None:
        ctx.error(at, "is not defined in the top-level secrets")
        return None
    mapping = definition.get("x-edgeward") if isinstance(definition, dict) else None
    if not isinstance(mapping, dict):
        ctx.error(
            at,
            "Edgeward does not read secret files: name the vault secret that holds "
            "it, x-edgeward: {vault: VAULT, secret: SECRET} (the file's name is the key)",
        )
        return None
    vault, secret = mapping.get("vault"), mapping.get("secret")
    if not isinstance(vault, str) or not isinstance(secret, str):
        ctx.error(f"{at}.x-edgeward", "give both vault and secret, as names")
        return None
    return vault, secret


# -- devices and networks --------------------------------------------------------------------


def devices(ctx: Context, path: str, value: object) -> list[str]:
    """The device labels that the service's device nodes are known by."""
    if not isinstance(value, list):
        ctx.error(path, f"expected a list, got {describe(value)}")
        return []
    found: list[str] = []
    for i, entry in enumerate(value):
        at = f"{path}[{i}]"
        if isinstance(entry, dict):
            host, inside = entry.get("source"), entry.get("target", entry.get("source"))
        elif isinstance(entry, str):
            host, _, rest = entry.partition(":")
            inside = rest.partition(":")[0] or host
        else:
            host = inside = None
        if not isinstance(host, str) or not isinstance(inside, str):
            ctx.error(at, f'expected "HOST-PATH[:CONTAINER-PATH]", got {describe(entry)}')
            continue
        label = _device_label(host, ctx.devices) or _device_label(host, _BUILTIN_DEVICES)
        if label is None:
            if any(fnmatch.fnmatchcase(host, g) for g in _GPU_NODES):
                ctx.error(
                    at,
                    f'"{host}" is a GPU node: ask for GPUs with deploy.resources.'
                    "reservations.devices (capabilities: [gpu], count: N)",
                )
            else:
                ctx.error(
                    at,
                    f'"{host}" has no device label: Edgeward passes devices by label; '
                    f'map it at the top level, x-edgeward: {{devices: {{"{host}": LABEL}}}}'
                    " with a [[devices.rule]] of that label in enforcer.toml",
                )
            continue
        if inside != host:
            ctx.warn(
                at,
                f"every {label} device of the host is passed in at its own path, not at {inside}",
            )
        if label not in found:
            found.append(label)
    return found


def _device_label(host: str, table: dict[str, str] | Any) -> str | None:
    for pattern, label in table.items():
        if fnmatch.fnmatchcase(host, pattern):
            return str(label)
    return None


def networks(ctx: Context, path: str, value: object) -> str:
    """The service's outbound setting: "deny" when every network it joins is internal."""
    names: list[str] = []
    if isinstance(value, list):
        names = [str(n) for n in value]
    elif isinstance(value, dict):
        for name, options in value.items():
            names.append(str(name))
            if isinstance(options, dict):
                for key in options:
                    ctx.ignored(f"{path}.{name}.{key}")
    else:
        ctx.error(path, f"expected a list or a mapping, got {describe(value)}")
    internal = True
    for name in names:
        definition = ctx.networks.get(name)
        if definition is None and name != "default":
            ctx.error(path, f'network "{name}" is not defined in the top-level networks')
        internal = internal and isinstance(definition, dict) and definition.get("internal") is True
    return "deny" if names and internal else "allow"
