"""Control's OpenAPI document is made from the same route table the server serves."""

from __future__ import annotations

from typing import Any

from control.api.app import ControlAPI
from control.api.openapi import openapi_document
from control.api.table import ROUTES
from control.service.core import Metrics


class NoService:
    metrics = Metrics()


def served_routes() -> set[tuple[str, str]]:
    app = ControlAPI(NoService()).app()  # type: ignore[arg-type]
    served = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD":
            served.add((route.method, str(path)))
    return served


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }


def test_every_served_route_is_documented_and_every_documented_route_is_served() -> None:
    served = served_routes()
    console = {r for r in served if r[1] == "/ui" or r[1].startswith("/ui/")}  # pages, not API
    assert console == {("GET", "/ui"), ("GET", "/ui/"), ("GET", "/ui/{file}")}
    served -= console
    documented = documented_routes(openapi_document())
    assert served == documented
    assert ("POST", "/v1/enrollment") in served and len(served) == len(ROUTES)


def test_every_operation_documents_its_answer_and_its_request_body() -> None:
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            ok = [s for s in operation["responses"] if s.startswith(("2", "3"))]
            assert ok, f"{method} {path} documents no answer"
            for status in ok:
                answer = operation["responses"][status]
                assert status == "304" or answer.get("content"), f"{method} {path} {status}"
            takes_body = method in ("put", "post", "patch") and not path.endswith("/revoke")
            assert ("requestBody" in operation) == takes_body, f"{method} {path}"
            params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert params == {p.strip("{}") for p in path.split("/") if p.startswith("{")}
