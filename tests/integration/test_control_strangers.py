"""Control answers strangers safely: enrollment needs its one-time secret before anything else,
and no route answers 500 to bad input (a real `edge-control serve` over TLS)."""

from __future__ import annotations

import io
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from control.api.app import MAX_BODY
from enforcer.link.enrollment import enroll
from enforcer.shared import pki
from enforcer.shared.bundle import parse_bundle
from tests.support.control import ControlProcess, run

UNKNOWN = (
    "the enrollment bundle is not valid: control does not know its secret "
    "(issue a new one with `edge-control site token`)"
)


def good_csr(site: str) -> str:
    return pki.make_csr(pki.generate_key(), site).decode()


async def post_enrollment(control: ControlProcess, body: Any) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cafile=str(control.state_dir / "ca.pem"))
    async with (
        aiohttp.ClientSession() as session,
        session.post(control.url + "/v1/enrollment", json=body, ssl=context) as r,
    ):
        return r.status, await r.json()


def test_an_unknown_site_and_a_wrong_secret_get_the_same_403_whatever_the_csr(
    control: ControlProcess, tmp_path: Path
) -> None:
    bundle = control.bundle("store-1")
    secret = parse_bundle(bundle).secret

    async def main() -> None:
        answers = [
            await post_enrollment(control, {"site": "nobody", "secret": secret, "csr": csr})
            for csr in (good_csr("nobody"), "not a csr")
        ] + [
            await post_enrollment(control, {"site": "store-1", "secret": "wrong", "csr": csr})
            for csr in (good_csr("store-1"), "not a csr")
        ]
        for status, body in answers:
            assert (status, body["error"]["message"]) == (403, UNKNOWN)
        # none of them used the secret up
        identity = await enroll(bundle, tmp_path / "site")
        assert identity.site == "store-1"

    run(main())


def test_a_malformed_csr_with_a_valid_secret_is_a_400_naming_it_and_keeps_the_secret(
    control: ControlProcess, tmp_path: Path
) -> None:
    bundle = control.bundle("store-1")
    secret = parse_bundle(bundle).secret

    async def main() -> None:
        status, body = await post_enrollment(
            control, {"site": "store-1", "secret": secret, "csr": "not a csr"}
        )
        assert status == 400
        assert body["error"]["message"] == "csr: the certificate request is not a PEM CSR"
        status, body = await post_enrollment(
            control, {"site": "store-1", "secret": secret, "csr": good_csr("x") + "\ud800"}
        )
        assert status == 400 and "surrogate" in body["error"]["message"]
        assert (await enroll(bundle, tmp_path / "site")).site == "store-1"
        assert "Traceback" not in control.log.read_text()

    run(main())


# --- every route against bad input --------------------------------------------------------

BAD_BODIES: list[bytes] = [
    b"{not json",
    b"\xff\xfe\x00",
    b"[" * 200_000,
    b'{"a": "\\ud800"}',
    b"[]",
    b"5",
    b'"text"',
    b"null",
    b"x" * (MAX_BODY + 1),
]
BAD_VALUES: list[Any] = [None, True, -1, 1e308, "", "x" * 5000, [], [[]], {}, {"a": [1]}, "\u202e"]
BAD_SEGMENTS = ["x" * 300, "%00", "%ff", "..%2f..", "%F0%9F%92%A9", "a%20b", "-", "latest"]
BAD_QUERIES = [
    "revision=-1&wait=abc",
    "wait=99999999999999999999999",
    "limit=0",
    "limit=" + "9" * 5000,
]


def wrong_bodies(schema: dict[str, Any] | None) -> list[bytes]:
    """Every field of `schema` (and the whole body) set to values of the wrong type or size."""
    names = list((schema or {}).get("properties", {})) or ["name"]
    bodies = [json.dumps({n: value for n in names}).encode() for value in BAD_VALUES]
    bodies += [json.dumps({n: value}).encode() for n in names for value in BAD_VALUES]
    return bodies + BAD_BODIES


def concrete_paths(path: str) -> list[str]:
    if "{" not in path:
        return [path]
    paths = []
    for segment in BAD_SEGMENTS:
        parts = [segment if p.startswith("{") else p for p in path.split("/")]
        paths.append("/".join(parts))
    return paths


def test_no_route_answers_500_to_malformed_wrongly_typed_huge_or_odd_input(
    control: ControlProcess, tmp_path: Path
) -> None:
    async def main() -> None:
        identity = await enroll(control.bundle("store-1"), tmp_path / "site")
        control.client().put("/v1/vaults/v", {"distribute": "system/name = store-1"})
        document = await control.call("GET", "/v1/openapi.json")
        admin = {"Authorization": f"Bearer {control.admin_token}"}
        operator_tls = ssl.create_default_context(cafile=str(control.state_dir / "ca.pem"))
        failures: list[str] = []
        count = 0
        async with aiohttp.ClientSession() as session:
            for path, operations in document["paths"].items():
                for method, operation in operations.items():
                    schema = (
                        operation.get("requestBody", {})
                        .get("content", {})
                        .get("application/json", {})
                        .get("schema")
                    )
                    site_route = path.startswith("/v1/sync/")
                    context = identity.ssl_context() if site_route else operator_tls
                    bodies = wrong_bodies(schema) if method != "get" else [b""]
                    for n, url_path in enumerate(concrete_paths(path)):
                        queries = BAD_QUERIES if method == "get" else [""]
                        for query in queries:
                            # every body on one path; odd paths with one good-sized body
                            for body in bodies if n == 0 else bodies[:1]:
                                url = control.url + url_path + ("?" + query if query else "")
                                async with session.request(
                                    method.upper(),
                                    url,
                                    data=io.BytesIO(body) if body else None,
                                    headers=admin,
                                    ssl=context,
                                ) as r:
                                    await r.read()
                                    count += 1
                                    if r.status >= 500:
                                        failures.append(
                                            f"{method} {url_path}?{query} {body[:60]!r}: {r.status}"
                                        )
        assert not failures, "\n".join(failures[:20])
        assert count > 500
        assert "Traceback" not in control.log.read_text()

    run(main(), timeout=170)
