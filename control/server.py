"""Starting control: state directory, CA and server certificate, admin token, store, HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import secrets
import signal
from pathlib import Path

from aiohttp import web

from control.api.app import ControlAPI
from control.api.listener import GatedTLSSite
from control.config import ControlConfig
from control.pki import load_or_create_authority, server_hosts
from control.service import ControlService
from control.store.base import Store, StoreOpenError, StoreUnavailable
from control.store.schema import SchemaTooNew
from control.store.sqlite import SQLiteStore
from control.vaults.envelope import (
    MASTER_KEY_FILE,
    Envelope,
    MasterKeyError,
    load_or_create_master_key,
)
from enforcer.shared.pki import write_file

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin-token"
DATABASE_FILE = "control.db"
LISTEN_BACKLOG = 4096
# An idle connection is closed after this long. A site's long-poll is never idle; its status
# push connection mostly is, and with 10,000 sites those would hold 10,000 more files.
KEEPALIVE_SECONDS = 15.0
TLS_READ_BUFFER = 32 * 1024


class StartupError(Exception):
    """Control cannot start; the message says why."""


def ensure_admin_token(state_dir: Path) -> tuple[str, bool]:
    """The admin token from ``admin-token`` (0600), created on first start."""
    path = state_dir / ADMIN_TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token, False
    token = "ewt_" + secrets.token_urlsafe(32)
    write_file(path, (token + "\n").encode(), 0o600)
    return token, True


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one: every waiting site holds a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


def shrink_tls_read_buffers() -> None:
    """Give each TLS connection a 32 KiB read buffer instead of asyncio's 256 KiB.

    asyncio's SSLProtocol allocates ``max_size`` bytes per connection up front; with one
    long-poll connection per site that is most of control's memory (256 KiB x 10,000 sites).
    A TLS record is at most 16 KiB, so 32 KiB loses nothing.
    """
    from asyncio import sslproto

    if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def make_store(config: ControlConfig) -> Store:
    """The store `config` names: PostgreSQL for a ``postgresql://`` database, else SQLite."""
    if config.database:
        from control.store.pg import PgStore

        return PgStore(config.database)
    return SQLiteStore(config.state_dir / DATABASE_FILE)


async def open_store(config: ControlConfig) -> Store:
    """The store, opened and migrated; StartupError naming the database when it cannot be."""
    store = make_store(config)
    try:
        await store.open()
    except (StoreOpenError, SchemaTooNew, StoreUnavailable) as e:
        raise StartupError(str(e)) from e
    return store


async def serve(
    config: ControlConfig, max_concurrent: int = 2048, ready: asyncio.Event | None = None
) -> None:
    """Run control until SIGTERM or SIGINT."""
    state_dir = config.state_dir
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(state_dir, 0o700)
    except OSError as e:
        raise StartupError(f"cannot use the state directory {state_dir}: {e.strerror}") from e
    limit = raise_open_files_limit()
    shrink_tls_read_buffers()
    store = await open_store(config)  # first: a database that cannot be used changes nothing
    try:
        authority = load_or_create_authority(state_dir)
        authority.ensure_server_cert(server_hosts(config.listen_host, config.public_host))
        token, created = ensure_admin_token(state_dir)
        master_key, _ = load_or_create_master_key(state_dir)
    except MasterKeyError as e:
        await store.close()
        raise StartupError(str(e)) from e
    except BaseException:
        await store.close()
        raise
    service = ControlService(
        store,
        authority,
        config.url,
        envelope=Envelope(master_key),
        master_key_path=state_dir / MASTER_KEY_FILE,
        events_keep=config.events.keep,
        git_dir=state_dir / "git",
    )
    runner: web.AppRunner | None = None
    try:
        try:
            await service.tenants.add_admin_token(token)
            await service.start()
        except (MasterKeyError, StoreUnavailable) as e:
            raise StartupError(str(e)) from e
        api = ControlAPI(
            service, max_concurrent=max_concurrent, metrics_public=config.metrics_public
        )
        runner = web.AppRunner(
            api.app(), access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_SECONDS
        )
        await runner.setup()
        host = config.listen_host or None
        tls = authority.server_ssl_context()
        tls.num_tickets = 0  # no site resumes a session: a ticket is 0.4 ms of CPU per handshake
        site = GatedTLSSite(
            runner,
            host,
            config.listen_port,
            ssl_context=tls,
            open_files=limit,
            backlog=LISTEN_BACKLOG,
            reuse_address=True,
            count=service.metrics.inc,
        )
        try:
            await site.start()
        except OSError as e:
            raise StartupError(f"cannot listen on {config.listen}: {e.strerror}") from e
        log.info(
            "control listening on %s (url %s, CA fingerprint %s, open files %d)%s",
            config.listen,
            config.url,
            authority.fingerprint,
            limit,
            "; admin token written to " + str(state_dir / ADMIN_TOKEN_FILE) if created else "",
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("control stopping")
    finally:
        await service.stop()
        if runner is not None:
            await runner.cleanup()
        await store.close()
