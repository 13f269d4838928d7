"""One Compose service as one spec service with one container, "main" (docs/compose.md)."""

from __future__ import annotations

import math
from typing import Any

from enforcer.shared.spec import compose_storage as storage
from enforcer.shared.spec.compose_values import Context, compose_size, literal, whole, words
from enforcer.shared.spec.fields import describe
from enforcer.shared.units import format_duration, format_size

__all__ = ["CONTAINER", "service"]

CONTAINER = "main"
_HANDLED = {
    "image",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "volumes",
    "healthcheck",
    "restart",
    "depends_on",
    "deploy",
    "devices",
    "networks",
    "secrets",
    "expose",
    "tmpfs",
    "stop_grace_period",
    "cpus",
    "mem_limit",
    "scale",
    "build",
    "privileged",
    "network_mode",
    "pid",
    "ipc",
    "userns_mode",
    "cap_add",
    "x-edgeward",
}
# Keys that would take a container out of its tenant's isolation: refused, not ignored.
_HOST_NAMESPACES = ("pid", "ipc", "userns_mode")
_RESTARTS = {
    "no": "never",
    "always": "always",
    "unless-stopped": "always",
    "on-failure": "on-failure",
}
_CONDITIONS = {"none": "never", "on-failure": "on-failure", "any": "always"}
_HEALTH_DEFAULTS = {"interval": 30.0, "timeout": 30.0}


def service(ctx: Context, name: str, value: object) -> dict[str, Any] | None:
    """The spec service of Compose service `name`; None when it cannot be converted (the
    reasons are in `ctx.errors`)."""
    at = f"services.{name}"
    svc = ctx.mapping(at, value)
    if svc is None:
        return None
    errors_before = len(ctx.errors)
    if storage.dns_name(name, "") != name:
        ctx.error(
            at,
            f'"{name}" is not a valid service name here: the other services reach it by '
            'this name, so it must be lower-case letters, digits and "-" (at most 63)',
        )
    image = svc.get("image")
    if image is None:
        why = "it only has build" if "build" in svc else "it has none"
        ctx.error(
            at,
            f"an image is required ({why}): Edgeward runs images from a registry and "
            "does not build them; build and push the image, then name it in image",
        )
    elif not isinstance(image, str) or not image:
        ctx.error(f"{at}.image", f"expected an image reference, got {describe(image)}")
    elif "build" in svc:
        ctx.ignored(f"{at}.build", "not supported (the image is pulled)")
    _refuse_host_access(ctx, at, svc)
    for key in svc:
        if key not in _HANDLED and not key.startswith("x-"):
            ctx.ignored(f"{at}.{key}")
    for key in ("cap_add",):
        if key in svc:
            ctx.ignored(f"{at}.{key}", "not granted")
    _depends_on(ctx, f"{at}.depends_on", svc.get("depends_on", []))

    doc: dict[str, Any] = {"name": name}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image if isinstance(image, str) else "",
    }
    command = words(ctx, f"{at}.command", svc.get("command"))
    if command is not None:
        container["cmd"] = [literal(w) for w in command]
    entrypoint = words(ctx, f"{at}.entrypoint", svc.get("entrypoint"))
    if entrypoint is not None:
        container["entrypoint"] = [literal(w) for w in entrypoint]
    env = _environment(ctx, f"{at}.environment", svc.get("environment", {}))
    if env:
        container["env"] = env
    volumes, mounts = storage.volumes(ctx, f"{at}.volumes", svc.get("volumes", []))
    tmpfs = svc.get("tmpfs", [])
    targets = [tmpfs] if isinstance(tmpfs, str) else tmpfs if isinstance(tmpfs, list) else []
    # "/run:size=64m": the options are not kept
    entries = [{"type": "tmpfs", "target": str(t).partition(":")[0]} for t in targets]
    spec, mount = storage.volumes(ctx, f"{at}.tmpfs", entries, taken=volumes)
    volumes, mounts = volumes + spec, mounts + mount
    secrets, secret_mounts = storage.secrets(ctx, f"{at}.secrets", svc.get("secrets", []))
    if volumes or secrets:
        doc["volumes"] = volumes + secrets
        container["mounts"] = mounts + secret_mounts
    probes = _healthcheck(ctx, f"{at}.healthcheck", svc.get("healthcheck"))
    if probes:
        container["probes"] = probes
    container["restart"] = _restart(ctx, at, svc)
    if "stop_grace_period" in svc:
        grace = ctx.duration(f"{at}.stop_grace_period", svc["stop_grace_period"])
        if grace is not None:
            container["stop-timeout"] = format_duration(grace)
    _deploy(ctx, at, svc, doc)
    placement: dict[str, Any] = doc.setdefault("placement", {})
    if "devices" in svc:
        labels = storage.devices(ctx, f"{at}.devices", svc["devices"])
        if labels:
            placement["devices"] = labels
    if not placement:
        del doc["placement"]
    ingress = storage.ports(ctx, f"{at}.ports", svc.get("ports", []))
    outbound = storage.networks(ctx, f"{at}.networks", svc.get("networks", ["default"]))
    doc["network"] = {"outbound": outbound, **({"ingress": ingress} if ingress else {})}
    doc["containers"] = [container]
    return doc if len(ctx.errors) == errors_before else None


def _refuse_host_access(ctx: Context, at: str, svc: dict[str, Any]) -> None:
    if svc.get("privileged") is True:
        ctx.error(
            f"{at}.privileged",
            "privileged containers are refused: one would control the "
            "whole host, outside its tenant (pass devices by label)",
        )
    mode = svc.get("network_mode")
    if mode is not None and mode not in ("bridge", "default"):
        ctx.error(
            f"{at}.network_mode",
            f'"{mode}" is refused: every service joins its '
            "application's own network, which keeps tenants apart",
        )
    for key in _HOST_NAMESPACES:
        if svc.get(key) == "host":
            ctx.error(
                f"{at}.{key}",
                "the host's namespace is refused: it would reach outside the application's tenant",
            )


def _depends_on(ctx: Context, at: str, value: object) -> None:
    """Checked, not enforced: the enforcer starts the services together and restarts those
    that stop (docs/compose.md)."""
    names = list(value) if isinstance(value, (list, dict)) else None
    if names is None:
        ctx.error(at, f"expected a list or a mapping of service names, got {describe(value)}")
        return
    for other in names:
        if other not in ctx.service_names:
            ctx.error(at, f'"{other}" is not a service of this file')


def _environment(ctx: Context, at: str, value: object) -> dict[str, str]:
    pairs: list[tuple[str, object]] = []
    if isinstance(value, dict):
        pairs = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        for i, entry in enumerate(value):
            if not isinstance(entry, str):
                ctx.error(f"{at}[{i}]", f'expected "NAME=value", got {describe(entry)}')
                continue
            key, equals, text = entry.partition("=")
            pairs.append((key, text if equals else None))
    else:
        ctx.error(at, f"expected a list or a mapping, got {describe(value)}")
    env: dict[str, str] = {}
    for key, raw in pairs:
        if raw is None:  # "NAME" alone: from the environment of the one who converts
            raw = ctx.environ.get(key)
            if raw is None:
                ctx.warn(f"{at}.{key}", "has no value and is not set here, so it is left out")
                continue
        written = ctx.text(f"{at}.{key}", raw)
        if written is not None:
            env[key] = literal(written)
    return env


def _healthcheck(ctx: Context, at: str, value: object) -> dict[str, Any]:
    """readiness and liveness probes running the health command; start_period delays the
    liveness probe."""
    if value is None:
        return {}
    check = ctx.mapping(at, value)
    if check is None or check.get("disable") is True:
        return {}
    for key in check:
        if key not in ("test", "interval", "timeout", "retries", "start_period", "disable"):
            ctx.ignored(f"{at}.{key}")
    test = check.get("test")
    command: list[str] | None = None
    if isinstance(test, str):
        command = ["/bin/sh", "-c", test]
    elif isinstance(test, list) and test and all(isinstance(w, str) for w in test):
        kind, rest = test[0], [str(w) for w in test[1:]]
        if kind == "NONE":
            return {}
        if kind == "CMD" and rest:
            command = rest
        elif kind == "CMD-SHELL" and len(rest) == 1:
            command = ["/bin/sh", "-c", rest[0]]
    if command is None:
        ctx.error(
            f"{at}.test",
            'expected ["CMD", ...], ["CMD-SHELL", "command"], ["NONE"] '
            f"or a shell command, got {describe(test)}",
        )
        return {}
    probe: dict[str, Any] = {"exec": command}
    for key, name in (("interval", "period"), ("timeout", "timeout")):
        seconds = ctx.duration(f"{at}.{key}", check.get(key, _HEALTH_DEFAULTS[key]))
        if seconds is not None:
            probe[name] = format_duration(seconds)
    retries = whole(check.get("retries", 3))
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 1:
        ctx.error(
            f"{at}.retries", f"expected a whole number of at least 1, got {describe(retries)}"
        )
    else:
        probe["failure-threshold"] = retries
    liveness = {**probe, "exec": list(command)}
    start = ctx.duration(f"{at}.start_period", check.get("start_period", 0))
    if start:
        liveness["initial-delay"] = format_duration(start)
    return {"readiness": probe, "liveness": liveness}


def _restart(ctx: Context, at: str, svc: dict[str, Any]) -> str:
    """Compose's default is "no": a container that stops stays stopped."""
    policy = "never"
    value = svc.get("restart")
    if value is not None:
        text = "no" if value is False else str(value)  # YAML 1.1 reads a bare no as false
        base, _, count = text.partition(":")
        if base not in _RESTARTS or (count and base != "on-failure"):
            ctx.error(
                f"{at}.restart",
                f'"{text}" is not a restart policy: use no, always, unless-stopped or on-failure',
            )
        else:
            policy = _RESTARTS[base]
            if count:
                ctx.ignored(
                    f"{at}.restart",
                    f'the limit of "{text}" is not supported (restarts back off instead)',
                )
    deploy = svc.get("deploy")
    restart_policy = deploy.get("restart_policy") if isinstance(deploy, dict) else None
    if isinstance(restart_policy, dict):
        condition = restart_policy.get("condition", "any")
        if condition in _CONDITIONS:
            policy = _CONDITIONS[condition]
        else:
            ctx.error(
                f"{at}.deploy.restart_policy.condition",
                f'"{condition}" is not a condition: use none, on-failure or any',
            )
        for key in restart_policy:
            if key != "condition":
                ctx.ignored(f"{at}.deploy.restart_policy.{key}")
    return policy


def _deploy(ctx: Context, at: str, svc: dict[str, Any], doc: dict[str, Any]) -> None:
    """replicas, mode, resources (limits; GPUs from the reservations) into `doc`."""
    deploy = svc.get("deploy", {})
    cpus, memory = svc.get("cpus"), svc.get("mem_limit")
    replicas = whole(svc.get("scale"))
    if isinstance(deploy, dict):
        for key in deploy:
            if key not in ("replicas", "mode", "resources", "restart_policy"):
                ctx.ignored(f"{at}.deploy.{key}")
        replicas = whole(deploy.get("replicas", replicas))
        mode = deploy.get("mode", "replicated")
        if mode == "global":
            doc["mode"] = "one-per-matching-host"
            if replicas is not None:
                ctx.error(f"{at}.deploy.replicas", 'cannot be set with mode "global"')
        elif mode != "replicated":
            ctx.error(f"{at}.deploy.mode", f'"{mode}" is not a mode: use replicated or global')
        resources = deploy.get("resources", {})
        if isinstance(resources, dict):
            limits = resources.get("limits", {})
            if isinstance(limits, dict):
                cpus, memory = limits.get("cpus", cpus), limits.get("memory", memory)
                for key in limits:
                    if key not in ("cpus", "memory"):
                        ctx.ignored(f"{at}.deploy.resources.limits.{key}")
            for key in resources:
                if key not in ("limits", "reservations"):
                    ctx.ignored(f"{at}.deploy.resources.{key}")
            _reservations(
                ctx, f"{at}.deploy.resources.reservations", resources.get("reservations", {}), doc
            )
    else:
        ctx.error(f"{at}.deploy", f"expected a mapping, got {describe(deploy)}")
    if replicas is not None and "mode" not in doc:
        if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas >= 0:
            doc["replicas"] = replicas
        else:
            ctx.error(f"{at}.deploy.replicas", f"expected a whole number, got {describe(replicas)}")
    spec: dict[str, Any] = {}
    if cpus is not None:
        try:
            value = float(cpus)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            ctx.error(
                f"{at}.deploy.resources.limits.cpus",
                f"expected a number above 0, got {describe(cpus)}",
            )
        else:
            spec["cpus"] = value
    if memory is not None:
        try:
            spec["memory"] = format_size(compose_size(memory))
        except ValueError as exc:
            ctx.error(f"{at}.deploy.resources.limits.memory", str(exc))
    if spec:
        doc["resources"] = spec


def _reservations(ctx: Context, at: str, value: object, doc: dict[str, Any]) -> None:
    if not isinstance(value, dict):
        ctx.error(at, f"expected a mapping, got {describe(value)}")
        return
    for key in value:
        if key != "devices":
            ctx.ignored(f"{at}.{key}", "not supported (the limits are also the request)")
    requests = value.get("devices", [])
    gpus = 0
    for i, request in enumerate(requests if isinstance(requests, list) else [requests]):
        where = f"{at}.devices[{i}]"
        capabilities = request.get("capabilities", []) if isinstance(request, dict) else None
        if not isinstance(request, dict) or not isinstance(capabilities, list):
            ctx.error(where, f"expected a mapping with capabilities, got {describe(request)}")
            continue
        if "gpu" not in capabilities:
            ctx.error(f"{where}.capabilities", "only GPUs (capabilities: [gpu]) can be reserved")
            continue
        count = whole(request.get("count", len(request.get("device_ids", [])) or None))
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            ctx.error(
                where,
                f"give count: N (a number of GPUs), got {describe(count)}: Edgeward "
                "places the instance on a host with that many free GPUs",
            )
            continue
        if "device_ids" in request:
            ctx.ignored(f"{where}.device_ids", "not supported (any free GPUs are given)")
        gpus += count
    if gpus:
        doc.setdefault("placement", {})["gpus"] = gpus
