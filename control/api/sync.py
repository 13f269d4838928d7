"""Control's API for sites (mutual TLS): the desired state long-poll, status, the vault key,
and the replies to the requests (log requests) handed out in the long-poll's answers."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from aiohttp import web

from control.api import schemas as s
from control.api.context import ApiContext, int_query, json_response, read_object
from control.model import BadRequest, ControlError, Invalid

DEFAULT_WAIT = 300.0
MAX_WAIT = 900.0
WAIT_JITTER = 0.1  # a long-poll ends after wait * (1 - U(0, WAIT_JITTER)) when nothing changes
# a reply holds up to 1 MiB of log lines; JSON escapes may make it a few times that
MAX_REPLY = 8 * 1024 * 1024


class TooLarge(ControlError):
    status = 413
    code = "too-large"


async def desired(api: ApiContext, request: web.Request) -> web.StreamResponse:
    site = api.site(request)
    revision = int_query(request, "revision", 0, 0, 2**62)
    wait = float(int_query(request, "wait", int(DEFAULT_WAIT), 0, int(MAX_WAIT)))
    wait *= 1.0 - random.uniform(0.0, WAIT_JITTER)
    logs = api.service.logs
    requests = await logs.take(site.name)
    if requests and site.revision == revision:  # the site's logs are asked for: at once
        return _requests(api, requests)
    if logs.pending(site.name):  # asked for while taking: again at once (no await in between)
        wait = 0.0
    if site.revision != revision:  # an answer to build now (vaults to seal): shed when busy
        busy = api.overloaded()
        if busy is not None:
            return busy
        with api.working():
            body = await api.service.sync.wait_desired(site, revision, wait)
    else:
        body = await api.service.sync.wait_desired(site, revision, wait)
    metrics = api.service.metrics
    requests += await logs.take(site.name)  # woken for a request, or it came meanwhile
    if body is None:
        if requests:
            return _requests(api, requests)
        metrics.inc("desired_not_modified_total")
        return web.Response(status=304)
    metrics.inc("desired_sent_total")
    if requests:
        metrics.inc("site_requests_sent_total", len(requests))
        body = body[:-1] + b',"requests":' + _dumps(requests) + b"}"
    return web.Response(body=body, content_type="application/json")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _requests(api: ApiContext, requests: list[dict[str, Any]]) -> web.Response:
    """An early answer to the long-poll: no new desired state (no "revision"), requests."""
    api.service.metrics.inc("site_requests_sent_total", len(requests))
    return web.Response(body=_dumps({"requests": requests}), content_type="application/json")


async def status(api: ApiContext, request: web.Request) -> web.Response:
    site = api.site(request)
    body = await read_object(request)
    events = body.get("events", [])
    if isinstance(events, list):  # owned by their applications' tenants here
        events = api.service.events.attribute(events)
    result = await api.service.sync.push_status(site, body.get("seq"), body.get("status"), events)
    if result.applied:
        if events:
            api.service.events.arrived()
        return json_response({"seq": result.last_seq, "applied": True})
    return json_response({"seq": result.last_seq, "duplicate": True})


async def vault_key(api: ApiContext, request: web.Request) -> web.Response:
    site = api.site(request)
    key = await api.service.vaults.site_key(site)
    return json_response({"key": base64.b64encode(key).decode()})


async def reply(api: ApiContext, request: web.Request) -> web.Response:
    """The site's reply to a request handed out in a long-poll's answer."""
    site = api.site(request)
    await api.service.logs.reply(site, await _large_object(request))
    return json_response({"accepted": True})


async def _large_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, up to `MAX_REPLY` bytes (more than other requests take)."""
    if request.content_length is not None and request.content_length > MAX_REPLY:
        raise TooLarge(f"the reply is larger than {MAX_REPLY} bytes")
    raw = bytearray()
    while chunk := await request.content.readany():
        raw += chunk
        if len(raw) > MAX_REPLY:
            raise TooLarge(f"the reply is larger than {MAX_REPLY} bytes")
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise Invalid(f"the request body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise BadRequest("the request body is nested too deeply") from e
    if not isinstance(body, dict):
        raise Invalid("the request body must be a JSON object")
    return body


# the bodies, as the route table and the OpenAPI document show them
LOG_REQUEST = s.obj(
    ("id", "kind", "instance", "tail"),
    id=s.STRING, kind=s.STRING, instance=s.STRING, container=s.nullable(s.STRING),
    tail=s.INTEGER,
)  # fmt: skip
REQUESTS = s.obj(("requests",), requests=s.array(LOG_REQUEST))
DESIRED_OR_REQUESTS = {
    "description": "A new desired state (it may carry requests too), or, without a revision, "
    "only requests for the site (log requests) while its desired state is unchanged",
    "anyOf": [s.DESIRED, REQUESTS],
}
REPLY = s.obj(
    ("id",),
    id=s.STRING,
    lines=s.array(s.obj(("line",), time=s.NUMBER, stream=s.STRING, line=s.STRING)),
    error=s.nullable(s.STRING),
)
ACCEPTED = s.obj(("accepted",), accepted=s.BOOLEAN)
