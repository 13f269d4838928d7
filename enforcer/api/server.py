"""The enforcer's local HTTP API (DESIGN.md, HTTP APIs) over aiohttp.

`make_app` serves the routes of `enforcer.api.routes` over an `Enforcer`; `serve` puts them on
the unix socket (no token) and, optionally, on a TCP listener where every request needs
``Authorization: Bearer <token>``. A tenant's token (on either) gets the
`enforcer.api.tenants.TenantView` of the enforcer. Errors: `enforcer.api.errors`.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import ssl
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from enforcer.api.errors import ApiError, errors_middleware
from enforcer.api.handlers import Handlers
from enforcer.api.routes import ROUTES
from enforcer.api.tenants import auth_middleware, load_tenant_tokens
from enforcer.api.tls import is_loopback, server_context
from enforcer.config.load import ensure_api_token
from enforcer.config.model import EnforcerConfig
from enforcer.config.reader import parse_listen
from enforcer.facade import Enforcer

__all__ = ["DEFAULT_MAX_BODY", "ApiError", "ApiServer", "make_app", "serve", "serve_configured"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1 << 20
SOCKET_GROUP = "edgeward"


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
    middlewares: list[Any] = [errors_middleware]  # aiohttp 3.8 and 3.9+ type them differently
    tenant_tokens = {t: n for t, n in (tenant_tokens or {}).items() if t and t != token}
    required = token is not None if require_token is None else require_token
    if required or tenant_tokens:
        middlewares.append(auth_middleware(enforcer, token, tenant_tokens, required))
    app = web.Application(middlewares=middlewares, client_max_size=max_body)
    handlers = Handlers(enforcer, max_body)
    app.on_shutdown.append(handlers.on_shutdown)
    for route in ROUTES:
        handler = getattr(handlers, route.handler)
        if route.method == "GET":
            app.router.add_get(route.path, handler, allow_head=not route.streams)
        else:
            app.router.add_route(route.method, route.path, handler)
    return app


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
    tls: ssl.SSLContext | None = None,
) -> ApiServer:
    """Serve the API on `socket_path` (0660, group `group` where it exists; the directory is
    created) and, when `listen` ("host:port") is set, on TCP with bearer `token`. Tenant
    tokens (token -> tenant) work on both.

    The TCP listener serves TLS with `tls`; plain HTTP only on a loopback address.

    Raises ValueError (a listener without token, or off loopback without TLS; a bad `listen`)
    and OSError (cannot bind; another enforcer answers on the socket)."""
    socket_path = Path(socket_path)
    tcp: tuple[str, int] | None = None
    if listen:
        if not token:
            raise ValueError("a TCP listener needs a bearer token")
        tcp = parse_listen(listen)
        if tls is None and not is_loopback(tcp[0]):
            raise ValueError(
                f"the TCP listener on {listen} would carry bearer tokens in clear: serve TLS "
                "(plain HTTP only on loopback)"
            )
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
            await web.TCPSite(tcp_runner, tcp[0] or None, tcp[1], ssl_context=tls).start()
            bound = tcp_runner.addresses[0]
            tcp_address = (str(bound[0]), int(bound[1]))
            scheme = "https" if tls is not None else "http"
            log.info("local API on %s and on %s://%s:%d", socket_path, scheme, *tcp_address)
        else:
            log.info("local API on %s", socket_path)
    except BaseException:
        for r in runners:
            await r.cleanup()
        sock.close()
        _unlink_socket(socket_path, socket_id)
        raise
    return ApiServer(runners, socket_path, socket_id, tcp_address)


async def serve_configured(enforcer: Enforcer, config: EnforcerConfig, host_id: str) -> ApiServer:
    """`serve` as `config` says: the socket; the TCP listener with its token (the file is
    made on first start), TLS (see `enforcer.api.tls`) and the tenants' tokens."""
    tls = None
    if config.api.listen:
        host, api = parse_listen(config.api.listen)[0], config.api
        tls = server_context(host, api.tls_cert, api.tls_key, config.state_dir, host_id)
    return await serve(
        enforcer,
        config.api.socket,
        config.api.listen,
        ensure_api_token(config),
        tenant_tokens=load_tenant_tokens(config),
        tls=tls,
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
