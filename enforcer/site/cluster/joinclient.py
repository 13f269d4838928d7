"""The joining side: redeem a join bundle at the inviting controller's join service.

The site CA is fetched without verification and checked against the bundle's fingerprint; the
secret and the certificate signing request travel only over TLS verified against that CA.
While it asks, the joining host listens on ``advertise:peer-port`` so that the controller can
check that it is reachable there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from enforcer.shared import pki
from enforcer.site.cluster.joining import JoinBundle, JoinError

if TYPE_CHECKING:
    from enforcer.shared.pki import PrivateKey

__all__ = ["Admission", "redeem"]

TIMEOUT = 30.0


@dataclass(frozen=True)
class Admission:
    """The join service's answer."""

    certificate: bytes
    ca: bytes
    endpoints: tuple[str, ...]
    ca_key: bytes | None = None  # controllers
    initial_cluster: dict[str, str] = field(default_factory=dict)  # controllers
    warnings: tuple[str, ...] = ()


async def _request(
    url: str, context: ssl.SSLContext | bool, body: dict[str, Any] | None = None
) -> bytes:
    method = "GET" if body is None else "POST"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
            session.request(method, url, json=body, ssl=context) as response,
        ):
            data, status = await response.read(), response.status
    except aiohttp.ClientConnectorCertificateError as exc:
        reason = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
        raise JoinError(f"cannot verify the controller at {url}: {reason}") from None
    except aiohttp.ClientConnectorError as exc:
        reason = (exc.os_error.strerror or str(exc.os_error)).lower()
        raise JoinError(f"cannot reach the controller at {url}: {reason}") from None
    except TimeoutError:
        raise JoinError(f"the controller at {url} did not answer within {TIMEOUT:g}s") from None
    except aiohttp.ClientError as exc:
        raise JoinError(f"cannot reach the controller at {url}: {exc}") from None
    if status >= 400:
        message = f"HTTP {status}"
        with contextlib.suppress(ValueError, KeyError, TypeError):
            message = str(json.loads(data)["error"]["message"])
        raise JoinError(f"the site refused the join: {message}")
    return data


@contextlib.asynccontextmanager
async def _listening(address: str, port: int) -> AsyncIterator[None]:
    """A listener on address:port that only accepts (the controller's reachability check)."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    try:
        server = await asyncio.start_server(accept, address, port)
    except OSError as exc:
        raise JoinError(
            f"cannot listen on {address}:{port} (cluster.advertise and peer-port): "
            f"{(exc.strerror or str(exc)).lower()}; advertise must be an address of this host"
        ) from None
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


async def redeem(
    bundle: JoinBundle, host: str, address: str, peer_port: int, key: PrivateKey
) -> Admission:
    """Join the site of `bundle` as host `host` at `address`; JoinError saying why not."""
    ca_pem = await _request(f"{bundle.url}/v1/site/ca", False)
    try:
        fingerprint = pki.cert_fingerprint(ca_pem)
    except ValueError:
        raise JoinError(f"{bundle.url} did not answer with a CA certificate") from None
    if fingerprint != bundle.ca_fingerprint:
        raise JoinError(
            f"the site CA at {bundle.url} has fingerprint {fingerprint}, not the join bundle's "
            f"{bundle.ca_fingerprint}: refusing to join (a wrong bundle, or someone in between)"
        )
    request = {
        "secret": bundle.secret,
        "host": host,
        "address": address,
        "role": bundle.role,
        "csr": pki.make_csr(key, host).decode("ascii"),
        "peer-port": peer_port,
    }
    async with _listening(address, peer_port):
        raw = await _request(f"{bundle.url}/v1/site/join", pki.client_ssl_context(ca_pem), request)
    try:
        answer = json.loads(raw)
        admission = Admission(
            certificate=answer["certificate"].encode("ascii"),
            ca=answer["ca"].encode("ascii"),
            endpoints=tuple(str(u) for u in answer["endpoints"]),
            ca_key=answer["ca-key"].encode("ascii") if "ca-key" in answer else None,
            initial_cluster={str(k): str(v) for k, v in answer.get("initial-cluster", {}).items()},
            warnings=tuple(str(w) for w in answer.get("warnings", ())),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise JoinError(f"the join service's answer is garbled ({exc})") from None
    if pki.cert_fingerprint(admission.ca) != bundle.ca_fingerprint:
        raise JoinError("the join service answered with another CA than the bundle's")
    return admission
