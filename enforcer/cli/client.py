"""A small blocking client of the enforcer's local API, for the CLI, over aiohttp.

It speaks to the daemon's unix socket, or over TCP with a bearer token. Each request runs on an
event loop of its own (a followed stream keeps its loop until it is closed); aiohttp is imported
only when a request is made, so that ``edge-enforcer --help`` starts fast. Failing requests raise
`ClientError` with the server's message; a daemon that cannot be reached raises
`EnforcerUnreachable` naming the socket (or URL) and the cause, in one line.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import ssl
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from enforcer import __version__

if TYPE_CHECKING:
    import aiohttp

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


_CAUSES = {
    errno.ENOENT: "no such file (is edge-enforcer running?)",
    errno.EACCES: "permission denied (run as root or as a member of the group edgeward)",
    errno.EPERM: "permission denied (run as root or as a member of the group edgeward)",
    errno.ECONNREFUSED: "connection refused (is edge-enforcer running?)",
}


class Client:
    """The local API at `socket_path`, or at `url` (``http://host:port``, or ``https://`` that
    `ca` or the system's trust store verifies) with `token`.

    `timeout` bounds connecting and every read except those of following streams."""

    def __init__(
        self,
        socket_path: Path | str = DEFAULT_SOCKET,
        *,
        url: str | None = None,
        token: str | None = None,
        ca: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.url = url
        self.token = token
        self.ca = ca
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
        exchange = self._send(
            "PUT", f"/v1/applications/{quote(name, safe='')}", body=body, content_type=content_type
        )
        return _mapping(exchange.json((200, 201))), exchange.status == 201

    def remove(self, name: str, purge: bool = False) -> None:
        query = {"purge": "true"} if purge else None
        self._call("DELETE", f"/v1/applications/{quote(name, safe='')}", query=query)

    def instances(self) -> list[dict[str, Any]]:
        return _records(self._call("GET", "/v1/instances"), "instances")

    def metrics(self) -> str:
        return self._send("GET", "/v1/metrics").body((200,)).decode("utf-8", "replace")

    def openapi(self) -> dict[str, Any]:
        return _mapping(self._call("GET", "/v1/openapi.json"))

    def enroll(self, bundle: str) -> dict[str, Any]:
        """Hand an enrollment bundle to the running daemon, which enrolls and starts syncing."""
        body = json.dumps({"bundle": bundle}).encode("utf-8")
        exchange = self._send("POST", "/v1/enrollment", body=body, content_type="application/json")
        return _mapping(exchange.json((200,)))

    def join_bundle(self, role: str, expires: str) -> dict[str, Any]:
        """A one-time join bundle from this controller (`edge-enforcer site join-bundle`)."""
        body = json.dumps({"role": role, "expires": expires}).encode("utf-8")
        exchange = self._send(
            "POST", "/v1/site/join-bundle", body=body, content_type="application/json"
        )
        return _mapping(exchange.json((200,)))

    def join(self, bundle: str, advertise: str = "") -> dict[str, Any]:
        """The running daemon joins the site of `bundle` (`edge-enforcer site join`)."""
        body = json.dumps({"bundle": bundle, "advertise": advertise}).encode("utf-8")
        exchange = self._send("POST", "/v1/site/join", body=body, content_type="application/json")
        return _mapping(exchange.json((200,)))

    def leave(self) -> dict[str, Any]:
        """The running daemon leaves its multi-host site (`edge-enforcer site leave`)."""
        exchange = self._send("POST", "/v1/site/leave")
        return _mapping(exchange.json((200,)))

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
        return self._send("GET", path, query=query, stream=follow).chunks()

    def events(self, since: int = 0, follow: bool = False) -> Generator[dict[str, Any], None, None]:
        """Events with seq > `since`, one dict each; with `follow`, forever."""
        query = {"since": str(since)}
        if follow:
            query["follow"] = "true"
        return self._send("GET", "/v1/events", query=query, stream=follow).events()

    # --- plumbing -----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> Any:
        return self._send(method, path, query=query).json(ok)

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        stream: bool = False,
    ) -> _Exchange:
        """The answer's head, on a loop and connection that `_Exchange` closes when read."""
        if self.url is None:
            base = "http://localhost"
        else:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise EnforcerUnreachable(f"{self.url}: not an http:// or https:// URL")
            base = self.url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": f"edge-enforcer/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        return _Exchange(self, method, base + path, dict(query or {}), headers, body, stream).open()

    def tls(self) -> ssl.SSLContext:
        """The context that verifies an https daemon: against `ca`, else the system's store."""
        try:
            return ssl.create_default_context(cafile=None if self.ca is None else str(self.ca))
        except (OSError, ssl.SSLError) as exc:
            reason = (getattr(exc, "strerror", None) or str(exc)).lower()
            raise EnforcerUnreachable(
                f"cannot read the CA certificate {self.ca}: {reason}"
            ) from None

    def unreachable(self, exc: BaseException) -> EnforcerUnreachable:
        if isinstance(exc, TimeoutError):
            cause = f"no answer within {self.timeout:g}s"
        elif isinstance(exc, ssl.SSLError):  # aiohttp's certificate error is one too
            problem = getattr(exc, "certificate_error", exc)
            cause = f"TLS failed: {getattr(problem, 'verify_message', None) or problem}"
        elif isinstance(exc, OSError):
            cause = _CAUSES.get(_errno(exc)) or _strerror(exc)
        else:
            cause = str(exc) or type(exc).__name__
        return EnforcerUnreachable(f"cannot reach the enforcer at {self.where}: {cause}")

    def lost(self, exc: BaseException) -> ClientError:
        if isinstance(exc, TimeoutError):
            return ClientError(f"the enforcer at {self.where} did not answer in time", 0)
        reason = str(exc) or type(exc).__name__
        return ClientError(f"lost the connection to the enforcer at {self.where}: {reason}", 0)


class _Exchange:
    """One request on an event loop of its own: opened, then read whole or streamed, then
    closed (the loop, the session and the connection) whatever happens."""

    def __init__(
        self,
        client: Client,
        method: str,
        url: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes | None,
        stream: bool,
    ) -> None:
        self.client = client
        self.request = (method, url, query, headers, body)
        self.stream = stream
        self.runner = asyncio.Runner()
        self.session: aiohttp.ClientSession | None = None
        self.response: aiohttp.ClientResponse | None = None
        self.status = 0
        self.closed = False

    def open(self) -> _Exchange:
        try:
            self.runner.run(self._open())
        except BaseException:
            self.close()
            raise
        return self

    async def _open(self) -> None:
        import aiohttp

        client = self.client
        connector = (
            aiohttp.UnixConnector(path=str(client.socket_path))
            if client.url is None
            else aiohttp.TCPConnector(ssl=client.tls())
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=client.timeout,
            sock_read=None if self.stream else client.timeout,
        )
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        method, url, query, headers, body = self.request
        try:
            self.response = await self.session.request(
                method,
                url,
                params=query,
                headers=headers,
                data=None if body is None else io.BytesIO(body),  # no warning when large
            )
        except (aiohttp.ClientConnectorError, TimeoutError) as exc:
            raise client.unreachable(exc) from None
        except aiohttp.ClientError as exc:
            raise client.lost(exc) from None
        self.status = self.response.status

    async def _read(self, kind: str) -> bytes:
        import aiohttp

        assert self.response is not None
        try:
            if kind == "all":
                return await self.response.read()
            if kind == "line":
                return await self.response.content.readline()
            return await self.response.content.readany()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise self.client.lost(exc) from None

    def body(self, ok: tuple[int, ...]) -> bytes:
        """The whole answer; a status other than `ok` raises `ClientError`."""
        try:
            data = self.runner.run(self._read("all"))
        finally:
            self.close()
        if self.status not in ok:
            assert self.response is not None
            raise _error(self.status, self.response.reason, data)
        return data

    def json(self, ok: tuple[int, ...]) -> Any:
        data = self.body(ok)
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise ClientError(
                f"the enforcer sent an answer that is not JSON (HTTP {self.status})", self.status
            ) from None

    def chunks(self) -> Generator[bytes, None, None]:
        """The answer as it arrives; raises (before the generator exists) unless it is 200."""
        if self.status != 200:
            self.body((200,))  # raises ClientError
        return self._iterate("chunk")

    def events(self) -> Generator[dict[str, Any], None, None]:
        """One dict an event; raises (before the generator exists) unless it is 200."""
        if self.status != 200:
            self.body((200,))  # raises ClientError
        return self._events()

    def _events(self) -> Generator[dict[str, Any], None, None]:
        for line in self._iterate("line"):
            if line.strip():
                try:
                    yield _mapping(json.loads(line))
                except ValueError:
                    raise ClientError("the enforcer sent an event that is not JSON", 200) from None
        if self.stream:  # following has no end of its own: the daemon stopped
            where = self.client.where
            raise ClientError(f"the enforcer at {where} ended the events (is it stopping?)", 0)

    def _iterate(self, kind: str) -> Generator[bytes, None, None]:
        try:
            while data := self.runner.run(self._read(kind)):
                yield data
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.response is not None:
                self.response.close()
            if self.session is not None:
                self.runner.run(self.session.close())
        finally:
            self.runner.close()


def _errno(exc: OSError) -> int:
    os_error = getattr(exc, "os_error", None)  # aiohttp's connector errors wrap the OSError
    return (os_error.errno if isinstance(os_error, OSError) else exc.errno) or 0


def _strerror(exc: OSError) -> str:
    code = _errno(exc)
    return (os.strerror(code) if code else str(exc)).lower()


def _error(status: int, reason: str | None, data: bytes) -> ClientError:
    try:
        error = json.loads(data)["error"]
        return ClientError(str(error["message"]), status, str(error.get("code", "")))
    except (ValueError, KeyError, TypeError):
        return ClientError(f"HTTP {status} {reason or ''}".rstrip(), status)


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ClientError("the enforcer sent an unexpected answer (not an object)", 0)
    return value


def _records(value: Any, key: str) -> list[dict[str, Any]]:
    records = _mapping(value).get(key)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ClientError(f"the enforcer sent an unexpected answer (no list of {key})", 0)
    return records
