"""Control's API for sites (mutual TLS): the desired state long-poll, status, the vault key."""

from __future__ import annotations

import base64
import random

from aiohttp import web

from control.api.context import ApiContext, int_query, json_response, read_object

DEFAULT_WAIT = 300.0
MAX_WAIT = 900.0
WAIT_JITTER = 0.1  # a long-poll ends after wait * (1 - U(0, WAIT_JITTER)) when nothing changes


async def desired(api: ApiContext, request: web.Request) -> web.StreamResponse:
    site = api.site(request)
    revision = int_query(request, "revision", 0, 0, 2**62)
    wait = float(int_query(request, "wait", int(DEFAULT_WAIT), 0, int(MAX_WAIT)))
    wait *= 1.0 - random.uniform(0.0, WAIT_JITTER)
    if site.revision != revision:  # an answer to build now (vaults to seal): shed when busy
        busy = api.overloaded()
        if busy is not None:
            return busy
        with api.working():
            body = await api.service.sync.wait_desired(site, revision, wait)
    else:
        body = await api.service.sync.wait_desired(site, revision, wait)
    metrics = api.service.metrics
    if body is None:
        metrics.inc("desired_not_modified_total")
        return web.Response(status=304)
    metrics.inc("desired_sent_total")
    return web.Response(body=body, content_type="application/json")


async def status(api: ApiContext, request: web.Request) -> web.Response:
    site = api.site(request)
    body = await read_object(request)
    result = await api.service.sync.push_status(
        site, body.get("seq"), body.get("status"), body.get("events", [])
    )
    if result.applied:
        return json_response({"seq": result.last_seq, "applied": True})
    return json_response({"seq": result.last_seq, "duplicate": True})


async def vault_key(api: ApiContext, request: web.Request) -> web.Response:
    site = api.site(request)
    key = await api.service.vaults.site_key(site)
    return json_response({"key": base64.b64encode(key).decode()})
