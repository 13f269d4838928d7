"""Sites' events at control, as decisions over plain values (no I/O): which columns an event is
searched by, who owns it, what a query asks for, and how a stored row is shown.

A site sends events in its status batches (kind, time, message, app, instance, tenant,
fields). Control does not take a site's word for the tenant: an event belongs to the tenant
that owns its application at control, and to nobody but the system tenant when control does not
know the application (a site-local one, or an event about the site itself).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

DEFAULT_KEEP_SECONDS = 14 * 24 * 3600.0
MAX_COLUMN = 256  # characters of kind, app, instance kept in a searchable column
MAX_PAGE = 1000
DEFAULT_PAGE = 100


@dataclass(frozen=True)
class EventColumns:
    tenant: str
    app: str
    instance: str
    kind: str
    time: float


def _text(value: Any) -> str:
    return value[:MAX_COLUMN] if isinstance(value, str) else ""


def event_app(event: Any) -> str:
    """The application an event is about: its ``app``, else its instance's first part."""
    if not isinstance(event, dict):
        return ""
    app = _text(event.get("app"))
    instance = _text(event.get("instance"))
    if not app and instance:
        app = instance.split(".", 1)[0]
    return app


class OwnedEvent(dict[str, Any]):
    """A site's event as the site sent it (and as it is stored), with the tenant control gives
    it beside it: ``owner``."""

    def __init__(self, event: dict[str, Any], owner: str) -> None:
        super().__init__(event)
        self.owner = owner


def event_columns(event: Any, received: float) -> EventColumns:
    """What a stored event is searched by; `received` stands for a missing or odd time. The
    tenant is its `OwnedEvent.owner` (else what the event says: stored before it was owned)."""
    if not isinstance(event, dict):
        return EventColumns("", "", "", "", received)
    when = event.get("time")
    if isinstance(when, bool) or not isinstance(when, int | float) or when != when:
        when = received
    tenant = event.owner if isinstance(event, OwnedEvent) else _text(event.get("tenant"))
    return EventColumns(
        tenant=tenant,
        app=event_app(event),
        instance=_text(event.get("instance")),
        kind=_text(event.get("kind")),
        time=float(when),
    )


def attribute(events: list[Any], owner: Callable[[str], str | None]) -> list[Any]:
    """The events, each owned by the tenant of its application at control ("" when control
    knows no such application); what is not an object is kept as it is."""
    out: list[Any] = []
    for event in events:
        if isinstance(event, dict):
            app = event_app(event)
            event = OwnedEvent(event, (owner(app) if app else None) or "")
        out.append(event)
    return out


@dataclass(frozen=True)
class EventQuery:
    """Which events to list: all filters are optional. ``tenants`` None: every tenant's
    (the system tenant); else only events owned by one of them."""

    site: str | None = None
    app: str | None = None
    tenants: frozenset[str] | None = None
    after: int | None = None
    limit: int = DEFAULT_PAGE


@dataclass(frozen=True)
class EventPage:
    events: list[dict[str, Any]]
    last: int
    """Pass as ``after`` to get what comes next."""


def event_view(
    row_id: int, site: str, received: float, tenant: str, stored: str | dict[str, Any]
) -> dict[str, Any]:
    """An event as the API shows it: ``{id, site, received, time, kind, app, instance, tenant,
    message, fields}``; fields the site did not send are "" (an old row: from its JSON)."""
    event = stored if isinstance(stored, dict) else {}
    columns = event_columns(event, received)
    fields = event.get("fields")
    message = event.get("message")
    return {
        "id": row_id,
        "site": site,
        "received": received,
        "time": columns.time,
        "kind": columns.kind,
        "app": columns.app,
        "instance": columns.instance,
        "tenant": tenant,
        "message": message if isinstance(message, str) else "",
        "fields": fields if isinstance(fields, dict) else {},
    }


def page_last(ids: Collection[int], limit: int, newest: int, after: int | None) -> int:
    """The position a follower continues from: the newest id the store held when it looked
    (nothing there or filtered out need be looked at again), unless the page was full and more
    may follow its last row."""
    if after is not None and len(ids) >= limit:
        return max(ids)
    return max(newest, after or 0)
