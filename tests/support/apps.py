"""Application documents for the enforcer's behaviour tests."""

from __future__ import annotations

from typing import Any


def container(name: str, image: str, *cmd: str, **extra: Any) -> dict[str, Any]:
    # busybox as PID 1 ignores SIGTERM: a short stop timeout keeps the suite fast
    return {"name": name, "image": image, "cmd": list(cmd), "stop-timeout": "1s", **extra}


def service(name: str, *containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "containers": list(containers), **extra}


def app(name: str, *services: dict[str, Any], version: str = "1") -> dict[str, Any]:
    return {"name": name, "version": version, "services": list(services)}


def sleeper(name: str, image: str, **extra: Any) -> dict[str, Any]:
    return service(name, container("main", image, "sleep", "100000"), **extra)


def web(name: str, image: str, port: int = 8080, **extra: Any) -> dict[str, Any]:
    return service(
        name, container("main", image, "httpd", "-f", "-p", str(port), "-h", "/www"), **extra
    )
