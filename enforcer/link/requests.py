"""Control's requests found in the long-poll (log requests), each answered in a task of its
own beside the poll; the reply goes to ``POST /v1/sync/replies``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

__all__ = ["OnRequest", "Requests"]

log = logging.getLogger(__name__)

# a request of control's -> the reply without its id: {"lines": [...], "error": None | str}
OnRequest = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
REQUESTS_AT_ONCE = 4  # requests answered at the same time; more wait their turn
REPLY_ATTEMPTS = 3  # control keeps a request 30 s: a reply is tried a few times within that


class Requests:
    """The requests being answered for one site's link to control at `url`."""

    def __init__(self, url: str, on_request: OnRequest | None) -> None:
        self.url = url
        self.on_request = on_request
        self.answering: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(REQUESTS_AT_ONCE)

    def take(self, session: aiohttp.ClientSession, requests: Any) -> None:
        """Answer each request in a task of its own: the long-poll goes on meanwhile."""
        if not isinstance(requests, list):
            log.warning("control's requests are not a list; ignored")
            return
        for request in requests:
            if not isinstance(request, dict) or not isinstance(request.get("id"), str):
                log.warning("a request of control's has no id; ignored: %.200r", request)
                continue
            task = asyncio.create_task(
                self._answer(session, request), name=f"sync-request-{request['id'][:16]}"
            )
            self.answering.add(task)
            task.add_done_callback(self.answering.discard)

    async def _answer(self, session: aiohttp.ClientSession, request: dict[str, Any]) -> None:
        async with self._slots:
            if self.on_request is None:
                answer: dict[str, Any] = {"lines": [], "error": "this site answers no requests"}
            else:
                try:
                    answer = await self.on_request(request)
                except Exception as exc:
                    log.exception("answering control's request %s failed", request["id"])
                    answer = {"lines": [], "error": f"the site failed to answer: {exc}"}
        body = {"id": request["id"], "lines": answer.get("lines", []),
                "error": answer.get("error")}  # fmt: skip
        url = f"{self.url}/v1/sync/replies"
        for attempt in range(REPLY_ATTEMPTS):
            try:
                async with session.post(
                    url, json=body, timeout=aiohttp.ClientTimeout(total=20.0)
                ) as response:
                    await response.read()
                    if response.status == 200:
                        return
                    if response.status == 404:  # control gave up on it (it keeps one 30 s)
                        log.info("control no longer waits for request %s", request["id"])
                        return
                    log.warning("control refused the reply to %s: HTTP %d", request["id"],
                                response.status)  # fmt: skip
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                log.warning("the reply to %s did not reach control: %s", request["id"],
                            _first_line(e))  # fmt: skip
            await asyncio.sleep(min(2.0**attempt, 4.0))


def _first_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0] if text else type(e).__name__
