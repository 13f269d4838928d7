"""Liveness, readiness and startup probes of one running container.

A `ProbeRunner` runs as one named task per container start. Startup holds the other two until
it passes; a failed startup or liveness probe calls `on_failure` (the instance worker then
restarts the container, through its plan). Readiness is reported in `ready`.

An attempt whose outcome is unknown — the engine could not be reached to run an exec probe —
counts neither way: an engine outage is not a liveness failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from enforcer.shared.spec.model import Probe, Probes

log = logging.getLogger(__name__)

CheckFn = Callable[[Probe], Awaitable[bool | None]]


class ProbeRunner:
    def __init__(
        self,
        name: str,
        probes: Probes,
        check: CheckFn,
        on_failure: Callable[[str], None],
        on_change: Callable[[], None],
    ) -> None:
        self.name = name
        self.probes = probes
        self._check = check
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

    async def _attempt(self, probe: Probe) -> bool | None:
        try:
            return await self._check(probe)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("probe of %s: %s", self.name, exc)
            return False

    async def _run(self) -> None:
        p = self.probes
        if p.startup is not None:
            if not await self._until(p.startup):
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

    async def _until(self, probe: Probe) -> bool:
        """Probe until it succeeds (True) or fails failure_threshold times in a row (False)."""
        await asyncio.sleep(probe.initial_delay)
        failures = 0
        while True:
            ok = await self._attempt(probe)
            if ok:
                return True
            failures += ok is False
            if failures >= probe.failure_threshold:
                return False
            await asyncio.sleep(probe.period)

    async def _liveness(self, probe: Probe) -> None:
        await asyncio.sleep(probe.initial_delay)
        failures = 0
        while True:
            await asyncio.sleep(probe.period)
            ok = await self._attempt(probe)
            if ok is None:
                continue  # not known: the engine is away
            failures = 0 if ok else failures + 1
            if failures >= probe.failure_threshold:
                self._on_failure(f"liveness probe failed {failures} times")
                return

    async def _readiness(self, probe: Probe) -> None:
        await asyncio.sleep(probe.initial_delay)
        failures = 0
        while True:
            ok = await self._attempt(probe)
            if ok is not None:
                failures = 0 if ok else failures + 1
                ready = ok or (self.ready is True and failures < probe.failure_threshold)
                if ready != self.ready:
                    self.ready = ready
                    self._on_change()
            await asyncio.sleep(probe.period)


class InstanceProbes(dict[str, tuple[str, ProbeRunner]]):
    """The probe runners of one instance: container name -> (container id, runner)."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self.instance = instance

    def begin(
        self,
        name: str,
        cid: str,
        probes: Probes,
        check: CheckFn,
        on_failure: Callable[[str], None],
        on_change: Callable[[], None],
    ) -> None:
        self.end(name)
        if probes == Probes():
            return
        runner = ProbeRunner(f"{self.instance}/{name}", probes, check, on_failure, on_change)
        self[name] = (cid, runner)
        runner.start()

    def end(self, name: str) -> None:
        entry = self.pop(name, None)
        if entry is not None:
            entry[1].stop()

    def end_all(self) -> None:
        for name in list(self):
            self.end(name)
