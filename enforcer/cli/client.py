"""A small synchronous client of the enforcer's local API, for the CLI.

Standard library only (`http.client` over a unix socket, or TCP with a bearer token), so that
`edge-enforcer ps` starts fast. Failing requests raise `ClientError` with the server's message;
a daemon that cannot be reached raises `EnforcerUnreachable` naming the socket and the cause.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from enforcer import __version__

__all__ = ["DEFAULT_SOCKET", "Client", "ClientError", "EnforcerUnreachable"]

DEFAULT_SOCKET = Path("/run/edgeward/enforcer.sock")
_READ_SIZE = 64 * 1024


class EnforcerUnreachable(Exception):
    """The daemon cannot be reached; str() names where and why."""


class ClientError(Exception):
    """The API answered with an error (`status` 0: the answer was lost or garbled)."""

    def __init__(self, message: str, status: int, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


_CAUSES = {
    errno.ENOENT: "no such file (is edge-enforcer running?)",
    errno.EACCES: "permission denied (run as root or as a member of the group edgeward)",
    errno.EPERM: "permission denied (run as root or as a member of the group edgeward)",
    errno.ECONNREFUSED: "connection refused (is edge-enforcer running?)",
}


class Client:
    """The local API at `socket_path`, or at `url` (``http://host:port``) with `token`.

    `timeout` bounds connecting and every read except those of following streams."""

    def __init__(
        self,
        socket_path: Path | str = DEFAULT_SOCKET,
        *,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.url = url
        self.token = token
        self.timeout = timeout
        self.where = url if url is not None else str(self.socket_path)

    # --- the API ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The health record, healthy (HTTP 200) or not (503)."""
        return _mapping(self._call("GET", "/v1/health", ok=(200, 503)))

    def host(self) -> dict[str, Any]:
        return _mapping(self._call("GET", "/v1/host"))

    def site(self) -> dict[str, Any]:
        return _mapping(self._call("GET", "/v1/site"))

    def applications(self) -> list[dict[str, Any]]:
        return _records(self._call("GET", "/v1/applications"), "applications")

    def application(self, name: str) -> dict[str, Any]:
        return _mapping(self._call("GET", f"/v1/applications/{quote(name, safe='')}"))

    def apply(self, name: str, body: bytes, content_type: str) -> tuple[dict[str, Any], bool]:
        """PUT a spec (JSON or YAML text); the record (with "changed") and whether it was
        created."""
        conn, response = self._send(
            "PUT", f"/v1/applications/{quote(name, safe='')}", body=body, content_type=content_type
        )
        return _mapping(self._finish(conn, response, (200, 201))), response.status == 201

    def remove(self, name: str, purge: bool = False) -> None:
        query = {"purge": "true"} if purge else None
        self._call("DELETE", f"/v1/applications/{quote(name, safe='')}", query=query)

    def instances(self) -> list[dict[str, Any]]:
        return _records(self._call("GET", "/v1/instances"), "instances")

    def metrics(self) -> str:
        conn, response = self._send("GET", "/v1/metrics")
        return self._finish_bytes(conn, response).decode("utf-8", "replace")

    def openapi(self) -> dict[str, Any]:
        return _mapping(self._call("GET", "/v1/openapi.json"))

    def logs(
        self,
        instance: str,
        container: str | None = None,
        tail: int | None = None,
        follow: bool = False,
    ) -> Generator[bytes, None, None]:
        """The output as it arrives. Errors (unknown instance) are raised here, before the
        first chunk; close the iterator to stop following."""
        query: dict[str, str] = {}
        if container:
            query["container"] = container
        if tail is not None:
            query["tail"] = str(tail)
        if follow:
            query["follow"] = "true"
        path = f"/v1/instances/{quote(instance, safe='')}/logs"
        conn, response = self._send("GET", path, query=query, stream=follow)
        self._check(conn, response)
        return self._chunks(conn, response)

    def events(self, since: int = 0, follow: bool = False) -> Generator[dict[str, Any], None, None]:
        """Events with seq > `since`, one dict each; with `follow`, forever."""
        query = {"since": str(since)}
        if follow:
            query["follow"] = "true"
        conn, response = self._send("GET", "/v1/events", query=query, stream=follow)
        self._check(conn, response)
        return self._lines(conn, response)

    # --- plumbing -----------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if self.url is None:
            return _UnixConnection(str(self.socket_path), self.timeout)
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EnforcerUnreachable(f"{self.url}: not an http:// or https:// URL")
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout)
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)

    def _unreachable(self, exc: OSError) -> EnforcerUnreachable:
        if isinstance(exc, TimeoutError | socket.timeout):
            cause = f"no answer within {self.timeout:g}s"
        else:
            cause = _CAUSES.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
        return EnforcerUnreachable(f"cannot reach the enforcer at {self.where}: {cause}")

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        stream: bool = False,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self._connection()
        headers = {"Accept": "application/json", "User-Agent": f"edge-enforcer/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        if query:
            path += "?" + urlencode(query)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise self._unreachable(exc) from None
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            if stream and conn.sock is not None:
                conn.sock.settimeout(None)  # following: wait for new output as long as it takes
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._lost(exc) from None
        return conn, response

    def _lost(self, exc: Exception) -> ClientError:
        if isinstance(exc, TimeoutError | socket.timeout):
            return ClientError(f"the enforcer at {self.where} did not answer in time", 0)
        reason = str(exc) or type(exc).__name__
        return ClientError(f"lost the connection to the enforcer at {self.where}: {reason}", 0)

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> Any:
        conn, response = self._send(method, path, query=query)
        return self._finish(conn, response, ok)

    def _finish_bytes(
        self,
        conn: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        ok: tuple[int, ...] = (200,),
    ) -> bytes:
        try:
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._lost(exc) from None
        finally:
            conn.close()
        if response.status not in ok:
            raise _error(response, data)
        return data

    def _finish(
        self,
        conn: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        ok: tuple[int, ...],
    ) -> Any:
        data = self._finish_bytes(conn, response, ok)
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise ClientError(
                f"the enforcer sent an answer that is not JSON (HTTP {response.status})",
                response.status,
            ) from None

    def _check(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        if response.status != 200:
            self._finish_bytes(conn, response)  # raises ClientError

    def _chunks(
        self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> Generator[bytes, None, None]:
        try:
            while chunk := response.read1(_READ_SIZE):
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            raise self._lost(exc) from None
        finally:
            conn.close()

    def _lines(
        self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> Generator[dict[str, Any], None, None]:
        try:
            while line := response.readline():
                if line.strip():
                    yield _mapping(json.loads(line))
        except (OSError, http.client.HTTPException) as exc:
            raise self._lost(exc) from None
        except ValueError:
            raise ClientError("the enforcer sent an event that is not JSON", 200) from None
        finally:
            conn.close()


def _error(response: http.client.HTTPResponse, data: bytes) -> ClientError:
    try:
        error = json.loads(data)["error"]
        return ClientError(str(error["message"]), response.status, str(error.get("code", "")))
    except (ValueError, KeyError, TypeError):
        return ClientError(f"HTTP {response.status} {response.reason}", response.status)


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ClientError("the enforcer sent an unexpected answer (not an object)", 0)
    return value


def _records(value: Any, key: str) -> list[dict[str, Any]]:
    records = _mapping(value).get(key)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ClientError(f"the enforcer sent an unexpected answer (no list of {key})", 0)
    return records
