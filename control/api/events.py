"""Control's API for the fleet's events and a site's logs (operators' bearer tokens)."""

from __future__ import annotations

from aiohttp import web

from control.api import schemas as s
from control.api.context import ApiContext, int_query, json_response
from control.fleet.events import DEFAULT_PAGE, MAX_PAGE
from control.model import Invalid
from control.service.events import MAX_WAIT
from control.service.logs import DEFAULT_TAIL, MAX_TAIL

# the answers, as the route table and the OpenAPI document show them
EVENT = s.obj(
    ("id", "site", "received", "time", "kind", "app", "instance", "tenant", "message", "fields"),
    id=s.INTEGER, site=s.STRING, received=s.NUMBER, time=s.NUMBER, kind=s.STRING, app=s.STRING,
    instance=s.STRING, tenant=s.STRING, message=s.STRING, fields={"type": "object"},
)  # fmt: skip
EVENT_PAGE = s.obj(("events", "last"), events=s.array(EVENT), last=s.INTEGER)
LOG_LINES = s.obj(
    ("site", "instance", "lines"),
    site=s.STRING,
    instance=s.STRING,
    container=s.nullable(s.STRING),
    lines=s.array(s.obj(("line",), time=s.NUMBER, stream=s.STRING, line=s.STRING)),
)


def _text_query(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > 253:
        raise Invalid(f"query parameter {name} is longer than 253 characters")
    return value


async def list_events(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    after = int_query(request, "after", -1, 0, 2**62)
    limit = int_query(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    wait = int_query(request, "wait", 0, 0, MAX_WAIT)
    events = api.service.events
    query = events.query(
        who,
        _text_query(request, "site"),
        _text_query(request, "app"),
        None if after < 0 else after,
        limit,
    )
    page = await events.list(query, float(wait))
    return json_response({"events": page.events, "last": page.last})


async def site_logs(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    instance = _text_query(request, "instance")
    if instance is None:
        raise Invalid("query parameter instance is required (an instance id such as web.web.0)")
    tail = int_query(request, "tail", DEFAULT_TAIL, 1, MAX_TAIL)
    answer = await api.service.logs.fetch(
        who, request.match_info["name"], instance, _text_query(request, "container"), tail
    )
    return json_response(answer)
