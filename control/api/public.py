"""Control's public endpoints: health, the OpenAPI document, Prometheus metrics, the CA.

Metrics follow the text exposition format 0.0.4: every family has ``# HELP`` and ``# TYPE``,
and every declared counter is there from the start (at 0). They need a token unless control
runs with ``metrics-public = true``.
"""

from __future__ import annotations

from aiohttp import web

from control.api.context import ApiContext, json_response
from control.fleet.metrics import fleet_families

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

COUNTERS = {
    "enrollments_total": "Sites enrolled.",
    "revisions_total": "New desired-state revisions given to sites.",
    "desired_sent_total": "Long-polls answered with a changed desired state.",
    "desired_not_modified_total": "Long-polls that ended without a change (304).",
    "status_batches_applied_total": "Status batches from sites applied.",
    "status_batches_duplicate_total": "Status batches from sites that were replays.",
    "events_received_total": "Events received from sites in status batches.",
    "site_requests_sent_total": "Requests (for logs) handed to sites in long-poll answers.",
    "http_shed_total": "Requests refused with 503 and Retry-After because control was busy.",
    "connections_refused_total": "Connections closed at once: control's connections were full.",
    "connections_stale_total": "Connections closed unread after 30 s waiting for a handshake.",
    "tls_handshakes_started_total": "TLS handshakes started (a few hundred at a time at most).",
    "tls_handshakes_failed_total": "TLS handshakes that failed, timed out or lost their peer.",
    "http_responses_2xx_total": "HTTP answers with a 2xx status.",
    "http_responses_3xx_total": "HTTP answers with a 3xx status.",
    "http_responses_4xx_total": "HTTP answers with a 4xx status.",
    "http_responses_5xx_total": "HTTP answers with a 5xx status.",
}


async def health(api: ApiContext, request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def openapi(api: ApiContext, request: web.Request) -> web.Response:
    return json_response(api.openapi)


async def metrics(api: ApiContext, request: web.Request) -> web.Response:
    if not api.metrics_public:
        await api.principal(request)
    return web.Response(body=exposition(api).encode(), headers={"Content-Type": CONTENT_TYPE})


def exposition(api: ApiContext) -> str:
    fleet = api.service.fleet
    gauges = [
        ("sites", "Sites known to control, enrolled or not.", len(fleet.sites)),
        (
            "sites_enrolled",
            "Sites enrolled and not revoked.",
            sum(1 for s in fleet.sites.values() if s.state == "enrolled"),
        ),
        ("sites_polling", "Sites with a long-poll waiting now.", len(fleet.desired.polling)),
        ("deployments", "Deployments.", len(fleet.deployments)),
        ("application_versions", "Application versions kept.", len(fleet.apps)),
        (
            "requests_in_flight",
            "Sheddable requests (status batches, enrollments) being served.",
            api.in_flight,
        ),
    ]
    lines: list[str] = []
    for name, help_text, value in gauges:
        metric = f"edgeward_control_{name}"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge", f"{metric} {value}"]
    counters = api.service.metrics.counters
    for name in sorted(COUNTERS.keys() | counters.keys()):
        metric = f"edgeward_control_{name}"
        help_text = COUNTERS.get(name, name.replace("_", " ").capitalize() + ".")
        lines += [
            f"# HELP {metric} {help_text}",
            f"# TYPE {metric} counter",
            f"{metric} {counters.get(name, 0)}",
        ]
    lines += fleet_families(fleet)  # each site's link, and the fleet's counts
    return "\n".join(lines) + "\n"
