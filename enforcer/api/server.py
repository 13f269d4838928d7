"""The enforcer's local HTTP API (DESIGN.md, HTTP APIs) over aiohttp.

`make_app` builds the routes over an `Enforcer`; `serve` puts them on the unix socket (no token)
and, optionally, on a TCP listener where every request needs ``Authorization: Bearer <token>``.
A tenant's token (on either) gets the `enforcer.api.tenants.TenantView` of the enforcer.
Every error answers ``{"error": {"code": ..., "message": ...}}``; an unexpected exception is
logged with its traceback and answered with a generic 500, so one request's failure never
reaches another.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from aiohttp import web

from enforcer.api.documents import DocumentError, format_for_media_type, parse_document
from enforcer.api.openapi import openapi_document
from enforcer.api.tenants import auth_middleware, current_view, load_tenant_tokens
from enforcer.config.load import EnforcerConfig, ensure_api_token, parse_listen
from enforcer.facade import Conflict, Enforcer, Forbidden, Invalid, NotFound

__all__ = ["DEFAULT_MAX_BODY", "ApiError", "ApiServer", "make_app", "serve", "start_api"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1 << 20
SOCKET_GROUP = "edgeward"
_POLL_S = 0.5  # how often a waiting stream checks whether its client is still there
_HEADER_WAIT_S = 0.5  # a stream waits this long for its first item before sending headers
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
T = TypeVar("T")


class ApiError(Exception):
    """An error answer: HTTP status, ``error.code`` and a message for the user."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers or None, dumps=_dumps)


_HTTP_CODES = {
    400: "invalid-body",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
}


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns every failure into the JSON error body."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, **exc.headers)
    except NotFound as exc:
        return error_response(404, "not-found", str(exc) or "not found")
    except Forbidden as exc:
        return error_response(403, "forbidden", str(exc) or "forbidden")
    except Conflict as exc:
        return error_response(409, "conflict", str(exc) or "conflict")
    except Invalid as exc:
        return error_response(422, "invalid-spec", str(exc) or "invalid spec")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"no such path: {request.path}"
        elif exc.status == 405:
            allowed = exc.headers.get("Allow", "")
            message = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
        else:
            message = exc.text or exc.reason
        code = _HTTP_CODES.get(exc.status, exc.reason.lower().replace(" ", "-"))
        headers = {
            name: value
            for name, value in exc.headers.items()
            if name.lower() in ("allow", "www-authenticate", "retry-after")
        }
        return error_response(exc.status, code, message, **headers)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error; see the enforcer's log")


def make_app(
    enforcer: Enforcer,
    *,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    tenant_tokens: Mapping[str, str] | None = None,
    require_token: bool | None = None,
) -> web.Application:
    """The API over `enforcer`. With a `token`, every request must carry it as a bearer token
    (the TCP listener); without, none is asked for (the unix socket). `tenant_tokens` (token
    -> tenant) are accepted on both and see only their tenant's part; `require_token`
    (default: whether `token` is given) says whether a request without a token is refused."""
    middlewares: list[Any] = [_errors]  # aiohttp 3.8 and 3.9+ type middlewares differently
    tenant_tokens = {t: n for t, n in (tenant_tokens or {}).items() if t and t != token}
    required = token is not None if require_token is None else require_token
    if required or tenant_tokens:
        middlewares.append(auth_middleware(enforcer, token, tenant_tokens, required))
    app = web.Application(middlewares=middlewares, client_max_size=max_body)
    api = _Handlers(enforcer, max_body)
    app.on_shutdown.append(api.on_shutdown)
    r = app.router
    r.add_get("/v1/health", api.health)
    r.add_get("/v1/host", api.host)
    r.add_get("/v1/site", api.site)
    r.add_get("/v1/applications", api.applications)
    r.add_get("/v1/applications/{name}", api.application)
    r.add_put("/v1/applications/{name}", api.apply)
    r.add_delete("/v1/applications/{name}", api.remove)
    r.add_get("/v1/instances", api.instances)
    r.add_get("/v1/instances/{id}/logs", api.logs, allow_head=False)
    r.add_get("/v1/events", api.events, allow_head=False)
    r.add_get("/v1/metrics", api.metrics)
    r.add_get("/v1/openapi.json", api.openapi)
    return app


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _bool_param(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ApiError(400, "invalid-parameter", f'{name}: "{value}" is not true or false')


def _int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ApiError(400, "invalid-parameter", f'{name}: "{value}" is not a whole number >= 0')
    return int(value)


class _Handlers:
    def __init__(self, enforcer: Enforcer, max_body: int) -> None:
        self.enforcer = enforcer  # all of it: see view
        self.max_body = max_body
        self.stopping = asyncio.Event()
        self.openapi_body = json.dumps(openapi_document()).encode("utf-8")

    async def on_shutdown(self, app: web.Application) -> None:
        self.stopping.set()  # ends streams that follow

    @property
    def view(self) -> Enforcer:
        """The enforcer as this request's token sees it."""
        return current_view() or self.enforcer

    async def health(self, request: web.Request) -> web.Response:
        health = self.view.health()
        return _json(health, 200 if health.get("healthy") else 503)

    async def host(self, request: web.Request) -> web.Response:
        return _json(self.view.host())

    async def site(self, request: web.Request) -> web.Response:
        return _json(self.view.site())

    async def applications(self, request: web.Request) -> web.Response:
        return _json({"applications": [r.to_json() for r in self.view.applications()]})

    async def application(self, request: web.Request) -> web.Response:
        return _json(self.view.application(request.match_info["name"]).to_json())

    async def apply(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        fmt = format_for_media_type(request.content_type)
        if fmt is None:
            raise ApiError(
                415,
                "unsupported-media-type",
                f"{request.content_type}: send the spec as application/json or application/yaml",
            )
        body = await self._read_body(request)
        try:
            document = parse_document(body, fmt)
        except DocumentError as exc:
            raise ApiError(400, "invalid-body", str(exc)) from None
        spec_name = document.get("name")
        if spec_name != name:
            got = f'"{spec_name}"' if isinstance(spec_name, str) else "no name"
            raise ApiError(400, "name-mismatch", f'the spec has {got} but the path names "{name}"')
        try:
            self.view.application(name)
            existed = True
        except NotFound:
            existed = False
        record, changed = await self.view.apply(document)
        return _json({**record.to_json(), "changed": changed}, 200 if existed else 201)

    async def _read_body(self, request: web.Request) -> bytes:
        too_large = ApiError(
            413, "body-too-large", f"the body is larger than {self.max_body} bytes"
        )
        if request.content_length is not None and request.content_length > self.max_body:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self.max_body:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def remove(self, request: web.Request) -> web.Response:
        purge = _bool_param(request, "purge")
        await self.view.remove(request.match_info["name"], purge)
        return web.Response(status=204)

    async def instances(self, request: web.Request) -> web.Response:
        return _json({"instances": [i.to_json() for i in self.view.instances()]})

    async def logs(self, request: web.Request) -> web.StreamResponse:
        container = request.query.get("container") or None
        tail = _int_param(request, "tail")
        follow = _bool_param(request, "follow")
        chunks = self.view.logs(request.match_info["id"], container, tail, follow)
        return await self._stream(request, chunks, "text/plain; charset=utf-8", lambda b: b)

    async def events(self, request: web.Request) -> web.StreamResponse:
        since = _int_param(request, "since") or 0
        follow = _bool_param(request, "follow")
        events = self.view.events(since, follow)
        return await self._stream(
            request,
            events,
            "application/x-ndjson",
            lambda e: (_dumps(e.to_json()) + "\n").encode("utf-8"),
        )

    async def _stream(
        self,
        request: web.Request,
        items: AsyncIterator[T],
        content_type: str,
        encode: Callable[[T], bytes],
    ) -> web.StreamResponse:
        """Streams `items` (chunked) until they end, the client leaves or the server stops.

        Waits briefly for the first item before sending headers, so that an error raised when
        iteration starts (NotFound) still gets its own status."""
        feed = _Feed(items, request, self.stopping)
        try:
            first = await feed.next(timeout=_HEADER_WAIT_S)  # errors here: answered as JSON
            response = web.StreamResponse(headers={"Content-Type": content_type})
            response.enable_chunked_encoding()
            await response.prepare(request)
            try:
                item = first
                while not isinstance(item, _End):
                    if not isinstance(item, _Timeout):
                        await response.write(encode(item))
                    item = await feed.next()
                await response.write_eof()
            except ConnectionError:
                pass  # the client went away
            except Exception:
                # headers are sent: the status cannot change any more; end the stream
                log.exception("%s %s failed while streaming", request.method, request.path)
            return response
        finally:
            await feed.close()

    async def metrics(self, request: web.Request) -> web.Response:
        body = self.view.metrics().encode("utf-8")
        return web.Response(body=body, headers={"Content-Type": _METRICS_TYPE})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self.openapi_body, content_type="application/json")


class _End:
    """The feed ended: the iterator is exhausted, the client left or the server stops."""


class _Timeout:
    """No item yet."""


class _Feed(Generic[T]):
    """Pulls from an async iterator while watching for the client leaving (aiohttp 3.9+ does
    not cancel handlers on disconnect) and for the server stopping."""

    def __init__(self, items: AsyncIterator[T], request: web.Request, stopping: asyncio.Event):
        self._items = items
        self._request = request
        self._stopping = stopping
        self._next: asyncio.Future[T] | None = None
        self._stop_wait: asyncio.Task[Any] | None = None

    async def next(self, timeout: float | None = None) -> T | _End | _Timeout:
        """The next item; `_Timeout` when `timeout` passes first; raises what the iterator
        raises."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._items.__anext__())
        if self._stop_wait is None:
            self._stop_wait = asyncio.ensure_future(self._stopping.wait())
        waited = 0.0
        while not self._next.done():
            step = _POLL_S if timeout is None else min(_POLL_S, timeout - waited)
            await asyncio.wait(
                {self._next, self._stop_wait}, timeout=step, return_when=asyncio.FIRST_COMPLETED
            )
            waited += step
            if self._next.done():
                break
            if self._stopping.is_set() or _client_gone(self._request):
                return _End()
            if timeout is not None and waited >= timeout:
                return _Timeout()
        done, self._next = self._next, None
        try:
            return done.result()
        except StopAsyncIteration:
            return _End()

    async def close(self) -> None:
        for task in (self._next, self._stop_wait):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._next is not None and self._next.done() and not self._next.cancelled():
            self._next.exception()  # retrieved: no "exception was never retrieved" warning
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                log.debug("closing a stream's source failed", exc_info=True)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


# --- listening --------------------------------------------------------------------------------


class ApiServer:
    """The running API listeners; `close()` stops them and removes the socket file."""

    def __init__(
        self,
        runners: list[web.AppRunner],
        socket_path: Path,
        socket_id: tuple[int, int],
        tcp_address: tuple[str, int] | None,
    ) -> None:
        self._runners = runners
        self._socket_id = socket_id
        self.socket_path = socket_path
        self.tcp_address = tcp_address
        """The TCP listener's (host, port) as bound, or None."""

    async def close(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
        _unlink_socket(self.socket_path, self._socket_id)

    async def __aenter__(self) -> ApiServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve(
    enforcer: Enforcer,
    socket_path: Path | str,
    listen: str = "",
    token: str | None = None,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    group: str = SOCKET_GROUP,
    tenant_tokens: Mapping[str, str] | None = None,
) -> ApiServer:
    """Serve the API on `socket_path` (0660, group `group` where it exists; the directory is
    created) and, when `listen` ("host:port") is set, on TCP with bearer `token`. Tenant
    tokens (token -> tenant) work on both.

    Raises ValueError (a listener without token, a bad `listen`) and OSError (cannot bind;
    another enforcer answers on the socket)."""
    socket_path = Path(socket_path)
    tcp: tuple[str, int] | None = None
    if listen:
        if not token:
            raise ValueError("a TCP listener needs a bearer token")
        tcp = parse_listen(listen)
    sock, socket_id = _bind_unix(socket_path, group)
    runners: list[web.AppRunner] = []
    try:
        local = make_app(
            enforcer,
            token=token,
            max_body=max_body,
            tenant_tokens=tenant_tokens,
            require_token=False,
        )
        runner = web.AppRunner(local)
        runners.append(runner)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        tcp_address = None
        if tcp is not None:
            remote = make_app(enforcer, token=token, max_body=max_body, tenant_tokens=tenant_tokens)
            tcp_runner = web.AppRunner(remote)
            runners.append(tcp_runner)
            await tcp_runner.setup()
            await web.TCPSite(tcp_runner, tcp[0] or None, tcp[1]).start()
            bound = tcp_runner.addresses[0]
            tcp_address = (str(bound[0]), int(bound[1]))
            log.info("local API on %s and on tcp %s:%d", socket_path, *tcp_address)
        else:
            log.info("local API on %s", socket_path)
    except BaseException:
        for r in runners:
            await r.cleanup()
        sock.close()
        _unlink_socket(socket_path, socket_id)
        raise
    return ApiServer(runners, socket_path, socket_id, tcp_address)


async def start_api(enforcer: Enforcer, config: EnforcerConfig) -> ApiServer:
    """`serve` as `config` says, creating the TCP token file on first start."""
    return await serve(
        enforcer,
        config.api.socket,
        config.api.listen,
        ensure_api_token(config),
        tenant_tokens=load_tenant_tokens(config),
    )


def _bind_unix(path: Path, group: str) -> tuple[socket.socket, tuple[int, int]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        st = path.lstat()
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        if _answers(path):
            raise OSError(f"{path}: another process already serves this socket")
        path.unlink()  # left over from a process that is gone
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))  # not listening yet: nobody can connect before the chmod
        os.chmod(path, 0o660)
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            log.debug("no group %s: %s stays in the process's group", group, path)
        else:
            try:
                os.chown(path, -1, gid)
            except OSError as exc:
                log.warning("cannot give %s to group %s: %s", path, group, exc)
        st = path.stat()
    except BaseException:
        sock.close()
        raise
    return sock, (st.st_dev, st.st_ino)


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _unlink_socket(path: Path, socket_id: tuple[int, int]) -> None:
    """Removes the socket file unless another process has replaced it since."""
    with contextlib.suppress(OSError):
        st = path.lstat()
        if (st.st_dev, st.st_ino) == socket_id:
            path.unlink()
