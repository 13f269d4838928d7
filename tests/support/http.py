"""Plain HTTP calls from synchronous test code, over aiohttp (the project's one HTTP client).

For readiness checks and one-off calls where a fixture or test has no event loop of its own.
Errors are aiohttp's (`aiohttp.ClientError`, `TimeoutError`), raised to the caller.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

__all__ = ["Answer", "request"]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
) -> Answer:
    """One request on a fresh connection, closed before returning."""

    async def call() -> Answer:
        connector = aiohttp.TCPConnector(ssl=context if context is not None else False,
                                         force_close=True)  # fmt: skip
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as session,
            session.request(method, url, data=body, headers=headers) as answer,
        ):
            return Answer(answer.status, await answer.read())

    return asyncio.run(call())
