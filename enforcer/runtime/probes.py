"""Liveness, readiness and startup probes of one running container.

A `ProbeRunner` runs as one named task per container start. Startup holds the other two until
it passes; a failed startup or liveness probe calls `on_failure` (the instance worker then
restarts the container, through its plan). Readiness is reported in `ready`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from enforcer.shared.spec.model import ExecProbe, HttpProbe, Probe, Probes, TcpProbe

log = logging.getLogger(__name__)

ExecFn = Callable[[list[str], float], Awaitable[int]]


async def check(probe: Probe, ip: str, run_exec: ExecFn) -> bool:
    """One probe attempt: True on success."""
    action = probe.action
    try:
        if isinstance(action, ExecProbe):
            return await run_exec(list(action.command), probe.timeout) == 0
        if isinstance(action, TcpProbe):
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(ip, action.port), probe.timeout
            )
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return True
        if isinstance(action, HttpProbe):
            return await asyncio.wait_for(_http_ok(ip, action), probe.timeout)
    except (TimeoutError, OSError, ValueError):
        return False
    except Exception as exc:
        log.debug("probe error: %s", exc)
        return False
    return False


async def _http_ok(ip: str, probe: HttpProbe) -> bool:
    reader, writer = await asyncio.open_connection(ip, probe.port)
    try:
        request = f"GET {probe.path} HTTP/1.0\r\nHost: {ip}\r\nUser-Agent: edgeward-probe\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        status = await reader.readline()
        parts = status.split()
        return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


class ProbeRunner:
    def __init__(
        self,
        name: str,
        probes: Probes,
        ip: Callable[[], str],
        run_exec: ExecFn,
        on_failure: Callable[[str], None],
        on_change: Callable[[], None],
    ) -> None:
        self.name = name
        self.probes = probes
        self._ip = ip
        self._exec = run_exec
        self._on_failure = on_failure
        self._on_change = on_change
        self.started = probes.startup is None
        self.ready: bool | None = None if probes.readiness is None else False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.probes.startup or self.probes.liveness or self.probes.readiness:
            self._task = asyncio.create_task(self._run(), name=f"probes:{self.name}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        p = self.probes
        if p.startup is not None:
            if not await self._until(p.startup, want_success=True):
                self._on_failure("startup probe failed")
                return
            self.started = True
            self._on_change()
        tasks = []
        if p.liveness is not None:
            tasks.append(self._liveness(p.liveness))
        if p.readiness is not None:
            tasks.append(self._readiness(p.readiness))
        if tasks:
            await asyncio.gather(*tasks)

    async def _until(self, probe: Probe, want_success: bool) -> bool:
        """Probe until it succeeds (True) or fails failure_threshold times in a row (False)."""
        await asyncio.sleep(probe.initial_delay)
        failures = 0
        while True:
            if await check(probe, self._ip(), self._exec):
                return True
            failures += 1
            if failures >= probe.failure_threshold:
                return False
            await asyncio.sleep(probe.period)

    async def _liveness(self, probe: Probe) -> None:
        await asyncio.sleep(probe.initial_delay)
        failures = 0
        while True:
            await asyncio.sleep(probe.period)
            if await check(probe, self._ip(), self._exec):
                failures = 0
                continue
            failures += 1
            if failures >= probe.failure_threshold:
                self._on_failure(f"liveness probe failed {failures} times")
                return

    async def _readiness(self, probe: Probe) -> None:
        await asyncio.sleep(probe.initial_delay)
        failures = 0
        while True:
            ok = await check(probe, self._ip(), self._exec)
            failures = 0 if ok else failures + 1
            ready = ok or (self.ready is True and failures < probe.failure_threshold)
            if ready != self.ready:
                self.ready = ready
                self._on_change()
            await asyncio.sleep(probe.period)
