"""The etcd gateway client's encoding and its handling of the gateway's traps.

Real etcd is in tests/integration/test_etcd_*.py; here a small aiohttp server answers the way
the gateway does when things go wrong, which a healthy etcd cannot be made to do on demand.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from enforcer.site.etcd.errors import (
    AuthFailed,
    Compacted,
    LeaseExpired,
    RequestFailed,
    Unavailable,
    error_from_body,
    parse_answer,
)
from enforcer.site.etcd.gateway import Compare, EtcdGateway, Put
from enforcer.site.etcd.records import EventKind, b64, kv_from, prefix_end
from tests.support.processes import free_port

E = "http://127.0.0.1:1"


def test_prefix_end_covers_exactly_the_keys_under_the_prefix() -> None:
    assert prefix_end(b"apps/") == b"apps0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"
    assert prefix_end(b"") == b"\x00"


def test_key_values_decode_base64_and_string_numbers_with_absent_zero_fields() -> None:
    kv = kv_from({"key": b64("hosts/ä".encode()), "mod_revision": "12", "lease": "7"})
    assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.lease) == (
        "hosts/ä",
        b"",
        0,
        12,
        7,
    )


def test_compare_and_put_encode_keys_and_revisions_as_the_gateway_wants() -> None:
    assert Compare("k", "create", 0).body() == {
        "key": "aw==",
        "target": "CREATE",
        "result": "EQUAL",
        "create_revision": "0",
    }
    assert Put("k", b"v", lease=9).body() == {
        "request_put": {"key": "aw==", "value": "dg==", "lease": "9"}
    }


@pytest.mark.parametrize(
    ("body", "kind", "words"),
    [
        ({"error": "etcdserver: request timed out", "code": 14}, Unavailable, "no quorum"),
        (
            {"error": {"grpc_code": 14, "message": "etcdserver: no leader"}},
            Unavailable,
            "no leader",
        ),
        ({"error": "etcdserver: permission denied", "code": 7}, AuthFailed, "permission denied"),
        ({"error": "etcdserver: invalid auth token", "code": 16}, AuthFailed, "auth token"),
        (
            {"error": "mvcc: required revision has been compacted", "code": 11},
            Compacted,
            "compacted",
        ),
        ({"error": "etcdserver: too many operations in txn", "code": 3}, RequestFailed, "code 3"),
    ],
)
def test_error_bodies_become_typed_errors_naming_the_endpoint(
    body: dict[str, Any], kind: type[Exception], words: str
) -> None:
    error = error_from_body(E, body, 200)
    assert isinstance(error, kind)
    assert str(error).startswith(f"etcd at {E}: ") and words in str(error)


def test_a_200_answer_with_an_error_body_is_an_error() -> None:
    raw = json.dumps({"error": {"grpc_code": 14, "message": "transport is closing"}}).encode()
    with pytest.raises(Unavailable, match="transport is closing"):
        parse_answer(E, raw, 200, stream=True)


def test_an_answer_that_is_not_json_says_so() -> None:
    with pytest.raises(RequestFailed, match="HTTP 502 with a body that is not JSON"):
        parse_answer(E, b"<html>bad gateway</html>", 502, stream=False)


def test_endpoints_must_be_urls() -> None:
    with pytest.raises(
        ValueError, match=re.escape("'10.0.0.1:7720' is not an http:// or https:// URL")
    ):
        EtcdGateway(["10.0.0.1:7720"])
    with pytest.raises(ValueError, match="no etcd endpoints"):
        EtcdGateway([])


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def with_fake_gateway(
    routes: dict[str, Handler], scenario: Callable[[EtcdGateway], Awaitable[None]]
) -> None:
    async def main() -> None:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_post(path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with EtcdGateway([f"http://127.0.0.1:{port}"], timeout=2) as etcd:
                await scenario(etcd)
        finally:
            await runner.cleanup()

    asyncio.run(main())


def message(result: dict[str, Any]) -> bytes:
    return json.dumps({"result": {"header": {"revision": "9"}, **result}}).encode() + b"\n"


def stream_of(*chunks: bytes) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    return handler


PUT_A = {"events": [{"kv": {"key": b64(b"a"), "value": b64(b"1"), "mod_revision": "7"}}]}
DEL_A = {"events": [{"type": "DELETE", "kv": {"key": b64(b"a"), "mod_revision": "8"}}]}


def test_a_watch_stream_that_ends_with_an_error_object_is_unavailable_and_resumable() -> None:
    error = json.dumps({"error": {"grpc_code": 13, "message": "server closed the stream"}})
    routes = {
        "/v3/watch": stream_of(
            message({"created": True}),
            message(PUT_A)[:20],  # a message split across writes
            message(PUT_A)[20:] + message(DEL_A),
            error.encode(),  # the last message has no newline
        )
    }

    async def scenario(etcd: EtcdGateway) -> None:
        async with etcd.watch("a", start_revision=5) as watch:
            first = await watch.__anext__()
            second = await watch.__anext__()
            with pytest.raises(Unavailable, match="watch stream ended: server closed the stream"):
                await watch.__anext__()
        assert [(e.kind, e.revision) for e in first + second] == [
            (EventKind.PUT, 7),
            (EventKind.DELETE, 8),
        ]
        assert watch.next_revision == 9

    with_fake_gateway(routes, scenario)


def test_a_watch_stream_that_just_ends_is_unavailable() -> None:
    routes = {"/v3/watch": stream_of(message({"created": True}))}

    async def scenario(etcd: EtcdGateway) -> None:
        async with etcd.watch("a") as watch:
            assert watch.next_revision == 10  # from now: after the revision it started at
            with pytest.raises(Unavailable, match="the watch stream ended"):
                await watch.__anext__()

    with_fake_gateway(routes, scenario)


def test_a_silent_watch_times_out_when_asked_to() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(message({"created": True}))
        await asyncio.sleep(1)
        return response

    async def scenario(etcd: EtcdGateway) -> None:
        async with etcd.watch("a", idle_timeout=0.3) as watch:
            with pytest.raises(Unavailable, match=re.escape("silent for 0.3s")):
                await watch.__anext__()

    with_fake_gateway({"/v3/watch": handler}, scenario)


def test_a_canceled_watch_with_a_compact_revision_raises_compacted() -> None:
    routes = {
        "/v3/watch": stream_of(
            message({"created": True}), message({"canceled": True, "compact_revision": "6"})
        )
    }

    async def scenario(etcd: EtcdGateway) -> None:
        async with etcd.watch("a", start_revision=3) as watch:
            with pytest.raises(Compacted) as caught:
                await watch.__anext__()
        assert (caught.value.compact_revision, caught.value.asked) == (6, 3)

    with_fake_gateway(routes, scenario)


def test_a_keep_alive_answered_without_ttl_means_the_lease_expired() -> None:
    routes = {"/v3/lease/keepalive": stream_of(message({"ID": "5"}))}

    async def scenario(etcd: EtcdGateway) -> None:
        with pytest.raises(LeaseExpired, match="lease 5 has expired"):
            await etcd.lease_keepalive(5)

    with_fake_gateway(routes, scenario)


def test_a_unary_call_answered_200_with_an_error_body_raises() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "etcdserver: no leader", "code": 14})

    async def scenario(etcd: EtcdGateway) -> None:
        with pytest.raises(Unavailable, match="no leader"):
            await etcd.put("k", b"v")

    with_fake_gateway({"/v3/kv/put": handler}, scenario)
