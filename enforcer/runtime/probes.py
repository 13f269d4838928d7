"""One probe attempt against a running container: exec (through the engine), TCP or HTTP.

HTTP goes through aiohttp, the one HTTP client stack of the enforcer besides the docker SDK.
The scheduling of attempts (periods, thresholds, startup holding liveness) is
`enforcer.reconcile.probing`; this module only answers "did this attempt pass?".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from enforcer.reconcile.runtime import RuntimeUnavailable
from enforcer.shared.spec.model import ExecProbe, HttpProbe, Probe, TcpProbe

log = logging.getLogger(__name__)

ExecFn = Callable[[list[str], float], Awaitable[int]]


async def check(probe: Probe, ip: str, run_exec: ExecFn) -> bool | None:
    """True on success, False on failure, None when the engine could not be asked."""
    action = probe.action
    try:
        if isinstance(action, ExecProbe):
            return await run_exec(list(action.command), probe.timeout) == 0
        if not ip:
            return False
        if isinstance(action, TcpProbe):
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(ip, action.port), probe.timeout
            )
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return True
        if isinstance(action, HttpProbe):
            return await _http_ok(ip, action, probe.timeout)
    except RuntimeUnavailable:
        return None
    except (TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
        log.debug("probe attempt failed: %s", exc)
        return False
    return False


async def _http_ok(ip: str, action: HttpProbe, timeout: float) -> bool:
    """GET the path; 2xx and 3xx pass. A session per attempt: attempts are seconds apart,
    and nothing stays open between them."""
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            headers={"User-Agent": "edgeward-probe"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as session,
        session.get(f"http://{ip}:{action.port}{action.path}", allow_redirects=False) as resp,
    ):
        return 200 <= resp.status < 400
