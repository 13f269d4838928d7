"""A controller's join service: where a joining host redeems its join bundle (HTTPS on
``advertise:join-port``, with this controller's certificate from the site CA).

GET  /v1/site/ca     the site CA's certificate (the joining host checks it against the
                     bundle's fingerprint before it sends anything)
POST /v1/site/join   {secret, host, address, role, csr, peer-port}: checks that the invitation
                     exists, is unused and unexpired, that no host of the site has that id, and
                     that this controller reaches ``address:peer-port``; then redeems the
                     invitation (compare-and-swap: a bundle works once), signs the host's
                     certificate and, for a controller, adds its etcd member as a learner.

Why a service of its own and not the enforcer's API: the API's TCP listener is optional and
wants a bearer token for every request, while a joining host holds nothing but the bundle's
secret; this service answers only these two requests, and only on controllers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from enforcer.site.cluster.joining import (
    Invitation,
    JoinError,
    JoinRequest,
    controller_count_warning,
    invitation_key,
    parse_join_request,
    refusal,
)
from enforcer.site.cluster.records import HOSTS
from enforcer.site.etcd.certs import SiteCA
from enforcer.site.etcd.errors import EtcdError
from enforcer.site.etcd.gateway import EtcdGateway
from enforcer.site.etcd.member import MemberConflict, add_member

__all__ = ["JoinService", "reachable"]

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def reachable(address: str, port: int, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when a TCP connection to address:port opens; else why not, in a few words."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except OSError as exc:
        return (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
    writer.close()
    return None


class JoinService:
    def __init__(
        self,
        *,
        gateway: EtcdGateway,
        ca: SiteCA,
        host: str,
        address: str,
        port: int,
        tls: ssl.SSLContext,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gateway = gateway
        self.ca = ca
        self.host = host
        self.address = address
        self.port = port
        self.tls = tls
        self.clock = clock
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()  # one join at a time: member adds must not interleave

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/v1/site/ca", self._ca)
        app.router.add_post("/v1/site/join", self._join)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.address, self.port, ssl_context=self.tls).start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                f"the join service cannot listen on {self.address}:{self.port} "
                f"(cluster.join-port): {(exc.strerror or str(exc)).lower()}"
            ) from None
        self._runner = runner
        log.info("join service on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _ca(self, request: web.Request) -> web.Response:
        return web.Response(body=self.ca.cert_pem, content_type="application/x-pem-file")

    async def _join(self, request: web.Request) -> web.Response:
        try:
            try:
                body = await request.json()
            except (ValueError, UnicodeDecodeError):
                raise _Refused(400, "invalid-body", "the join request is not JSON") from None
            try:
                join = parse_join_request(body)
            except JoinError as exc:
                raise _Refused(400, "invalid-body", str(exc)) from None
            async with self._lock:
                answer = await self._admit(join)
        except _Refused as exc:
            log.warning("join refused: %s", exc.message)
            body = {"error": {"code": exc.code, "message": exc.message}}
            return web.json_response(body, status=exc.status)
        except EtcdError as exc:
            body = {"error": {"code": "store-unavailable", "message": f"the site store: {exc}"}}
            return web.json_response(body, status=503)
        return web.json_response(answer)

    async def _admit(self, join: JoinRequest) -> dict[str, Any]:
        key = invitation_key(join.secret)
        entry = await self.gateway.get(key)
        try:
            invitation = Invitation.from_json(entry.value) if entry else None
        except JoinError as exc:
            raise _Refused(403, "join-refused", str(exc)) from None
        reason = refusal(invitation, join.role, self.clock())
        if reason is not None:
            raise _Refused(403, "join-refused", reason)
        assert entry is not None and invitation is not None
        await self._no_twin(join)
        problem = await reachable(join.address, join.peer_port)
        if problem is not None:
            raise _Refused(
                422,
                "unreachable",
                f"host {join.host} advertises {join.address}, but controller {self.host} "
                f"cannot reach {join.address}:{join.peer_port}: {problem}",
            )
        redeemed = await self.gateway.update(
            key, invitation.redeemed_by(join.host).to_json(), entry.mod_revision
        )
        if not redeemed.succeeded:
            raise _Refused(
                403,
                "join-refused",
                "this join bundle was used already: a bundle "
                "works once; print a new one with `edge-enforcer site join-bundle`",
            )
        controller = join.role == "controller"
        try:
            cert = self.ca.sign_csr(
                join.csr.encode(), join.host, [join.address] if controller else None
            )
        except ValueError as exc:
            raise _Refused(400, "invalid-body", str(exc)) from None
        answer: dict[str, Any] = {
            "certificate": cert.decode("ascii"),
            "ca": self.ca.cert_pem.decode("ascii"),
            "warnings": [],
        }
        if controller:
            peer_url = f"https://{join.address}:{join.peer_port}"
            try:
                cluster = await add_member(self.gateway, join.host, peer_url, learner=True)
            except MemberConflict as exc:
                raise _Refused(409, "conflict", str(exc)) from None
            answer["ca-key"] = self.ca.key_pem.decode("ascii")
            answer["initial-cluster"] = cluster
            warning = controller_count_warning(len(cluster))
            if warning:
                answer["warnings"].append(warning)
                log.warning("%s", warning)
        members = await self.gateway.member_list()
        answer["endpoints"] = sorted({u for m in members for u in m.client_urls})
        log.info("host %s joined the site as a %s from %s", join.host, join.role, join.address)
        return answer

    async def _no_twin(self, join: JoinRequest) -> None:
        record = await self.gateway.get(HOSTS + join.host)
        address = ""
        if record is not None:
            try:
                address = str(json.loads(record.value).get("address", ""))
            except (ValueError, AttributeError):
                address = "?"
        else:
            for member in await self.gateway.member_list():
                if member.name == join.host:
                    address = ", ".join(member.peer_urls)
        if record is not None or address:
            raise _Refused(
                409,
                "host-id-taken",
                f"a host with id {join.host} is already in the site (at {address}): give the "
                "joining host its own [host] id",
            )
