"""The operator's HTTP client for control's API (used by the `edge-control` commands).

Blocking calls over aiohttp and TLS that trusts control's CA; each request runs on an event loop
of its own (in a worker thread when the caller already runs one), and aiohttp is imported only
when a request is made, so that the CLI starts fast. Every failure is an `ApiError` whose message
is one line: control unreachable, TLS verification failed, or control's own error message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import os
import ssl
import urllib.parse
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ApiError", "Connection", "ControlClient"]

TIMEOUT = 30.0
T = TypeVar("T")


class ApiError(Exception):
    """Control answered with an error, or could not be reached; the message is one line."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Connection:
    url: str
    token: str
    ca: Path | None  # control's CA (ca.pem); None: the system's trust store


class ControlClient:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        parts = urllib.parse.urlsplit(connection.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ApiError(f"control's URL {connection.url!r} is not an https:// URL")
        try:
            if connection.ca is not None:
                self._context = ssl.create_default_context(cafile=str(connection.ca))
            else:
                self._context = ssl.create_default_context()
        except (OSError, ssl.SSLError) as e:
            raise ApiError(f"cannot read the CA certificate {connection.ca}: {e}") from e

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        status, reason, raw = _blocking(self._request(method, path, body, query))
        if status >= 400:
            raise _api_error(status, reason, raw)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    async def _request(
        self, method: str, path: str, body: Any, query: dict[str, str] | None
    ) -> tuple[int, str, bytes]:
        import aiohttp

        where = self.connection.url
        headers = {"Accept": "application/json"}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.connection.token:
            headers["Authorization"] = f"Bearer {self.connection.token}"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
                session.request(
                    method,
                    where.rstrip("/") + path,
                    params=query,
                    data=None if data is None else io.BytesIO(data),  # no warning when large
                    headers=headers,
                    ssl=self._context,
                ) as response,
            ):
                return response.status, response.reason or "", await response.read()
        except aiohttp.ClientConnectorCertificateError as e:
            problem = e.certificate_error
            message = getattr(problem, "verify_message", None) or str(problem)
            raise ApiError(
                f"cannot verify control at {where}: {message} (is --ca control's ca.pem?)"
            ) from None
        except aiohttp.ClientSSLError as e:
            raise ApiError(f"TLS with control at {where} failed: {e}") from None
        except aiohttp.ClientConnectorError as e:
            cause = os.strerror(e.os_error.errno) if e.os_error.errno else str(e.os_error)
            raise ApiError(f"cannot reach control at {where}: {cause.lower()}") from None
        except TimeoutError:
            raise ApiError(f"control at {where} did not answer within {TIMEOUT:g}s") from None
        except aiohttp.ClientError as e:
            reason = str(e) or type(e).__name__
            raise ApiError(f"lost the connection to control at {where}: {reason}") from None

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _blocking(coro: Coroutine[Any, Any, T]) -> T:
    """`coro` run to its end on a loop of its own (in a worker thread when this thread already
    runs an event loop, which is then blocked as by any blocking call)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _api_error(status: int, reason: str, raw: bytes) -> ApiError:
    try:
        error = json.loads(raw)["error"]
        message = str(error["message"])
        details = error.get("errors")
        if isinstance(details, list) and details:
            shown = "; ".join(
                f"{d.get('path')}: {d.get('message')}" if d.get("path") else str(d.get("message"))
                for d in details[:10]
            )
            if shown not in message:
                message = f"{message} ({shown})"
        return ApiError(message.replace("\n", "; "), status, str(error.get("code", "")))
    except (ValueError, KeyError, TypeError):
        return ApiError(f"control answered HTTP {status} {reason}".rstrip(), status)


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")
