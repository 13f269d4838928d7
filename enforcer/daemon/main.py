"""`edge-enforcer run`: the daemon as a service, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from enforcer.config.model import EnforcerConfig
from enforcer.daemon.core import Daemon
from enforcer.runtime.docker import RuntimeUnavailable
from enforcer.site.kv.base import KVError
from enforcer.site.store import StoreError

log = logging.getLogger("enforcer.daemon")


def run_daemon(config: EnforcerConfig) -> None:
    """`edge-enforcer run`: serve until SIGTERM/SIGINT, then stop without stopping containers."""
    logging.basicConfig(
        level=os.environ.get("EDGEWARD_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_main(config))


async def _main(config: EnforcerConfig) -> None:
    from enforcer.api.server import serve_configured

    daemon = Daemon(config)
    try:
        await daemon.start()
    except (StoreError, RuntimeUnavailable, KVError) as exc:
        raise SystemExit(f"edge-enforcer: error: {exc}") from exc
    server = await serve_configured(daemon, config, daemon.host_id)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    log.info("enforcer ready: host %s, site %s", daemon.host_id, daemon.site_name)
    await stop.wait()
    log.info("stopping (containers keep running)")
    await server.close()
    await daemon.stop()
