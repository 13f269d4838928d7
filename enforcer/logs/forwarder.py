"""Error lines of this host's managed containers, forwarded as site events.

`ErrorForwarder` looks at the engine's managed containers when told that one started
or ended (`notice`, from the reconciler's engine events) and every `scan` seconds besides: one that
appears gets one asyncio task that follows its log stream (`enforcer.runtime.logstream`,
no thread), one that is gone is dropped; a container that stopped is followed again from its
last line when it runs again. Lines are read and classified one at a time
(`enforcer.logs.errors`); error lines pass a token bucket per instance and become
``log-error`` events, what the bucket refuses becomes one ``log-errors-suppressed`` event per
window. Events go through the site's event log: stored at the site, and forwarded to control.
How far each container was read is kept (`enforcer.logs.marks`, at most once a second and at
stop): after a restart a container is followed on from its mark, so what it wrote meanwhile
is forwarded; one without a mark that already ran is followed from the forwarder's start on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from enforcer.logs.errors import (
    EVENT_LINE_BYTES,
    LEVEL_WORDS,
    Rate,
    RateLimiter,
    cut,
    error_level,
    is_error,
)
from enforcer.logs.marks import ReadMarks
from enforcer.reconcile.runtime import ObservedContainer, RuntimeRequestError, RuntimeUnavailable
from enforcer.runtime.logstream import LogLine, follow_after

__all__ = ["ErrorForwarder"]

log = logging.getLogger(__name__)

MARKS_EVERY = 1.0  # seconds between saves of how far the containers were read
SCAN_INTERVAL = 30.0  # seconds between looks when no start is noticed (a missed event)


class Emit(Protocol):
    def __call__(
        self,
        kind: str,
        message: str,
        *,
        app: str = ...,
        instance: str = ...,
        tenant: str = ...,
        fields: Mapping[str, Any] | None = ...,
    ) -> Awaitable[None]: ...


class LogSource(Protocol):
    def batches(
        self,
        container_id: str,
        *,
        follow: bool,
        keep: int,
        tail: int | None = ...,
        since: str = ...,
        stdout_words: tuple[bytes, ...] = ...,
    ) -> AsyncIterator[list[LogLine]]: ...


@dataclass
class _Followed:
    container: ObservedContainer
    since: str  # Docker's `since` to follow from ("": the container's first line)
    stamp: str = ""  # the last line's timestamp
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class ErrorForwarder:
    """See the module documentation."""

    def __init__(
        self,
        list_containers: Callable[[], Awaitable[list[ObservedContainer]]],
        source: LogSource,
        emit: Emit,
        *,
        host: str,
        rate: Rate,
        scan: float = SCAN_INTERVAL,
        marks: ReadMarks | None = None,
    ) -> None:
        self.list_containers = list_containers
        self.source = source
        self.emit = emit
        self.host = host
        self.rate = rate
        self.scan = scan
        self.followed: dict[str, _Followed] = {}  # container id -> how far it is read
        self.limiters: dict[str, RateLimiter] = {}  # instance -> its bucket
        self._labels: dict[str, tuple[str, str]] = {}  # instance -> (app, tenant)
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self._noticed = asyncio.Event()
        self.marks = marks
        # the marks last saved (or loaded: where the first look follows containers from)
        self._saved_marks: dict[str, str] = marks.load() if marks is not None else {}
        self._marks_at = 0.0  # monotonic time of the last save

    def notice(self) -> None:
        """A managed container started or ended: look now (a new one is read from its first
        line all the same; the storm of one that ended is summed up at once)."""
        self._noticed.set()

    def start(self) -> None:
        self._started = time.time()
        self._task = asyncio.create_task(self._run(), name="log-errors")

    async def stop(self) -> None:
        tasks = [f.task for f in self.followed.values() if f.task is not None]
        if self._task is not None:
            tasks.append(self._task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._save_marks(force=True)

    def _save_marks(self, *, force: bool) -> None:
        """How far each followed container was read, at most every MARKS_EVERY seconds."""
        if self.marks is None or (not force and time.monotonic() - self._marks_at < MARKS_EVERY):
            return
        self._marks_at = time.monotonic()
        marks = {cid: f.stamp for cid, f in self.followed.items() if f.stamp}
        if marks != self._saved_marks:
            self.marks.save(marks)
            self._saved_marks = marks

    async def _run(self) -> None:
        first = True
        while True:
            try:
                self._look(await self.list_containers(), first)
                first = False
            except RuntimeUnavailable as exc:
                log.debug("no containers to follow now: %s", exc)
            await self._summaries(time.time())
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(self._until_next()):
                    await self._noticed.wait()
            self._noticed.clear()

    def _until_next(self) -> float:
        """The next look: `scan` from now, or sooner when a suppressed storm must be told."""
        due = [d for lim in self.limiters.values() if (d := lim.due_at) is not None]
        return min([self.scan, *(max(0.0, d - time.time()) for d in due)])

    def _look(self, containers: list[ObservedContainer], first: bool) -> None:
        seen = set()
        for c in containers:
            if not c.instance:
                continue
            seen.add(c.id)
            self._labels[c.instance] = (c.labels.get("edgeward.app", ""),
                                        c.labels.get("edgeward.tenant", ""))  # fmt: skip
            followed = self.followed.get(c.id)
            if followed is None:  # new: from its first line; at start, from its mark or now on
                mark = self._saved_marks.get(c.id, "") if first else ""
                since = follow_after(mark) if mark else f"{self._started:.9f}" if first else ""
                followed = self.followed[c.id] = _Followed(c, since, stamp=mark)
            elif followed.task is not None or c.state != "running":
                continue  # followed now, or stopped and read to its end
            elif followed.stamp:
                followed.since = follow_after(followed.stamp)
            followed.task = asyncio.create_task(self._follow(followed), name=f"log-errors-{c.name}")
        for gone in [cid for cid in self.followed if cid not in seen]:
            task = self.followed.pop(gone).task
            if task is not None:
                task.cancel()

    async def _follow(self, followed: _Followed) -> None:
        c = followed.container
        try:
            async for batch in self.source.batches(
                c.id, follow=True, keep=EVENT_LINE_BYTES, since=followed.since,
                stdout_words=LEVEL_WORDS,
            ):  # fmt: skip
                for line in batch:  # one at a time; most are not errors
                    if line.stream == "stderr" or error_level(line.head):
                        await self._line(c, line)
                if batch[-1].raw_stamp:
                    followed.stamp = batch[-1].stamp
                    self._save_marks(force=False)
        except RuntimeRequestError as exc:  # removed meanwhile
            log.debug("logs of %s: %s", c.name, exc)
        except RuntimeUnavailable as exc:
            log.debug("logs of %s: %s", c.name, exc)
        except Exception:
            log.exception("following the logs of %s failed", c.name)
        finally:
            followed.task = None

    async def _line(self, c: ObservedContainer, line: LogLine) -> None:
        level = error_level(line.head)
        if not is_error(line.stream, level):
            return
        limiter = self.limiters.get(c.instance)
        if limiter is None:
            limiter = self.limiters[c.instance] = RateLimiter(self.rate)
        if not limiter.admit(line.time):
            if limiter.suppressed == 1:  # a storm begins: its summary is due a window on
                self._noticed.set()
            return
        app, tenant = self._labels.get(c.instance, ("", ""))
        fields = {"container": c.container, "host": self.host, "stream": line.stream,
                  "level": level}  # fmt: skip
        await self.emit(
            "log-error", cut(line.head, line.size), app=app, instance=c.instance, tenant=tenant,
            fields=fields,
        )  # fmt: skip

    async def _summaries(self, now: float) -> None:
        """The summaries that are due; limiters of instances gone and at rest are forgotten."""
        running = {f.container.instance for f in self.followed.values()}
        for instance, limiter in list(self.limiters.items()):
            summary = limiter.due(now, final=instance not in running)
            if summary is not None:
                app, tenant = self._labels.get(instance, ("", ""))
                fields = {"count": summary.count, "first": summary.first, "last": summary.last}
                with contextlib.suppress(Exception):
                    await self.emit(
                        "log-errors-suppressed", summary.message(instance, now), app=app,
                        instance=instance, tenant=tenant, fields=fields,
                    )  # fmt: skip
            if instance not in running and limiter.idle(now):
                del self.limiters[instance]
                self._labels.pop(instance, None)
