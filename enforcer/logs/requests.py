"""Control's log requests answered at the site: the instance's last lines, read locally.

The container is found as for `edge-enforcer logs` (the daemon's `find`), and its lines are
read through the engine's log stream (`enforcer.runtime.logstream`), at most one line of
`REPLY_LINE_BYTES` held beyond what the reply keeps (`enforcer.logs.replies`). On a
multi-host site control reaches the leader only: a request for an instance another host runs
is relayed to that host (`enforcer.site.cluster.logrelay`), which answers it the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from enforcer.facade import NotFound
from enforcer.logs.errors import REPLY_LINE_BYTES
from enforcer.logs.forwarder import LogSource
from enforcer.logs.replies import ReplyLines, parse_request
from enforcer.reconcile.runtime import RuntimeRequestError, RuntimeUnavailable

__all__ = ["answer_log_request"]

log = logging.getLogger(__name__)

FindContainer = Callable[[str, str | None], Awaitable[str]]  # instance, container -> its id
Relay = Callable[[str, Any], Awaitable[dict[str, Any]]]  # host, request -> that host's reply


async def answer_log_request(
    doc: Any,
    find: FindContainer,
    source: LogSource,
    site: str,
    elsewhere: Callable[[str], str | None] = lambda instance: None,
    relay: Relay | None = None,
) -> dict[str, Any]:
    """The reply to one request of control's: ``{"lines": [...], "error": None | message}``.
    `elsewhere` names the other host of the site that runs an instance this one does not;
    `relay` hands the request to it."""
    try:
        request = parse_request(doc)
    except ValueError as exc:
        return {"lines": [], "error": str(exc)}
    try:
        container_id = await find(request.instance, request.container)
    except NotFound as exc:
        host = elsewhere(request.instance)
        if host and relay is not None:
            log.info("log request for %s relayed to host %s", request.instance, host)
            return await relay(host, doc)
        if host:
            return {"lines": [], "error": (
                f"{request.instance} runs on host {host} of site {site}; control reaches the "
                f"host that leads the site only (there: edge-enforcer logs {request.instance})"
            )}  # fmt: skip
        return {"lines": [], "error": f"{exc} at site {site}"}
    collected = ReplyLines()
    try:
        async for batch in source.batches(
            container_id, follow=False, keep=REPLY_LINE_BYTES, tail=request.tail
        ):
            for line in batch:
                collected.add(line.time, line.stream, line.head, line.size)
    except (RuntimeRequestError, RuntimeUnavailable) as exc:
        return {"lines": [], "error": f"cannot read the logs of {request.instance}: {exc}"}
    log.info("sent control %d log lines of %s", len(collected.lines()), request.instance)
    return {"lines": collected.lines(), "error": None}
