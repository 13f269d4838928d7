"""Control's HTTP API (aiohttp): operators with bearer tokens, sites with mutual TLS.

Errors are ``{"error": {"code": ..., "message": ...}}``; bodies are limited by
``client_max_size``; past `max_concurrent` status batches and enrollments in progress control
answers those with 503 and ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from control.api.openapi import openapi_document
from control.api.vaults import VaultHandlers, json_response
from control.fleet import deployments as dep
from control.fleet.access import Principal
from control.model import ControlError, Invalid, NotFound, Site
from control.service import ControlService

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
DEFAULT_WAIT = 300.0
MAX_WAIT = 900.0
WAIT_JITTER = 0.1  # a long-poll ends after wait * (1 - U(0, WAIT_JITTER)) when nothing changes
DEFAULT_TTL = 24 * 3600.0
# Shed what costs work (status batches, enrollments); a long-poll is parked at once, and turning
# it away would only delay the site's next change.
SHED_PATHS = ("/v1/sync/status", "/v1/enrollment")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=status)


_json = json_response


class ControlAPI(VaultHandlers):
    def __init__(self, service: ControlService, max_concurrent: int = 2048) -> None:
        self.service = service
        self.max_concurrent = max_concurrent
        self.in_flight = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors, self._shed_load])
        app.on_response_prepare.append(self._server_header)
        r = app.router
        r.add_get("/v1/health", self.health)
        r.add_get("/v1/openapi.json", self.openapi)
        r.add_get("/v1/metrics", self.metrics)
        r.add_get("/v1/enrollment/ca", self.ca)
        r.add_post("/v1/enrollment", self.enroll)
        r.add_post("/v1/enrollment/tokens", self.create_site_token)
        r.add_get("/v1/tenants", self.list_tenants)
        r.add_post("/v1/tenants", self.create_tenant)
        r.add_post("/v1/tokens", self.create_token)
        r.add_get("/v1/sites", self.list_sites)
        r.add_get("/v1/sites/{name}", self.get_site)
        r.add_patch("/v1/sites/{name}", self.patch_site)
        r.add_post("/v1/sites/{name}/assign", self.assign_site)
        r.add_post("/v1/sites/{name}/revoke", self.revoke_site)
        r.add_get("/v1/sites/{name}/events", self.site_events)
        r.add_get("/v1/applications", self.list_apps)
        r.add_get("/v1/applications/{name}", self.get_app)
        r.add_get("/v1/applications/{name}/versions/{version}", self.get_app_version)
        r.add_put("/v1/applications/{name}/versions/{version}", self.put_app_version)
        r.add_get("/v1/deployments", self.list_deployments)
        r.add_get("/v1/deployments/{name}", self.get_deployment)
        r.add_put("/v1/deployments/{name}", self.put_deployment)
        r.add_delete("/v1/deployments/{name}", self.delete_deployment)
        r.add_get("/v1/deployments/{name}/status", self.deployment_status)
        self.add_vault_routes(r)
        r.add_get("/v1/sync/desired", self.sync_desired)
        r.add_post("/v1/sync/status", self.sync_status)
        return app

    # --- middleware -----------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ControlError as e:
            extra: dict[str, Any] = dict(e.details)
            if isinstance(e, Invalid) and e.errors:
                extra["errors"] = [{"path": p, "message": m} for p, m in e.errors]
            return error_response(e.status, e.code, e.message, **extra)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            code = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
                e.status, "http-error"
            )
            message = e.text or e.reason
            if e.status == 413:
                message = f"the request body is larger than {MAX_BODY} bytes"
            elif e.status == 404:
                message = f"no such endpoint: {request.method} {request.path}"
            response = error_response(e.status, code, message)
            for header in ("Retry-After", "Allow"):
                if header in e.headers:
                    response.headers[header] = e.headers[header]
            return response
        self.service.metrics.inc(f"http_responses_{response.status // 100}xx_total")
        return response

    @web.middleware
    async def _shed_load(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Only site traffic is shed: operators keep their way in when a fleet storms in.
        if not request.path.startswith(SHED_PATHS):
            return await handler(request)
        if self.in_flight >= self.max_concurrent:
            self.service.metrics.inc("http_shed_total")
            retry = str(random.randint(1, 5))
            return _shed(retry)
        self.in_flight += 1
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    @staticmethod
    async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "edgeward"

    async def _principal(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if header and scheme.lower() != "bearer":
            token = ""
        return await self.service.authenticate(token.strip() or None)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw) if raw else None
        except ValueError as e:
            raise Invalid(f"the request body is not valid JSON: {e}") from e

    async def _object(self, request: web.Request) -> dict[str, Any]:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise Invalid("the request body must be a JSON object")
        return body

    # --- public ---------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document())

    async def metrics(self, request: web.Request) -> web.Response:
        s = self.service
        lines = []
        gauges = {
            "edgeward_control_sites": len(s.sites),
            "edgeward_control_sites_enrolled": sum(
                1 for x in s.sites.values() if x.state == "enrolled"
            ),
            "edgeward_control_sites_polling": len(s.desired.polling),
            "edgeward_control_deployments": len(s.deployments),
            "edgeward_control_application_versions": len(s.apps),
            "edgeward_control_requests_in_flight": self.in_flight,
        }
        for name, value in gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        for name, value in sorted(s.metrics.counters.items()):
            metric = f"edgeward_control_{name}"
            lines += [f"# TYPE {metric} counter", f"{metric} {value}"]
        return web.Response(
            text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8"
        )

    async def ca(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.service.authority.ca_pem, content_type="application/x-pem-file"
        )

    async def enroll(self, request: web.Request) -> web.Response:
        body = await self._object(request)
        site, secret, csr = body.get("site"), body.get("secret"), body.get("csr")
        if not all(isinstance(v, str) and v for v in (site, secret, csr)):
            raise Invalid("enrollment needs site, secret and csr")
        assert isinstance(site, str) and isinstance(secret, str) and isinstance(csr, str)
        cert = await self.service.enroll(site, secret, csr)
        return _json(
            {
                "site": site,
                "certificate": cert.decode(),
                "ca": self.service.authority.ca_pem.decode(),
            },
            201,
        )

    # --- operators ------------------------------------------------------------------------

    async def create_site_token(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        body = await self._object(request)
        labels = body.get("labels")
        if labels is not None and not (
            isinstance(labels, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        ):
            raise Invalid("labels must map strings to strings")
        ttl = body.get("ttl", DEFAULT_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float):
            raise Invalid("ttl must be a number of seconds")
        bundle, expires = await self.service.site_token(
            who, str(body.get("site", "")), labels, float(ttl)
        )
        return _json({"site": body["site"], "bundle": bundle, "expires": expires}, 201)

    async def list_tenants(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        return _json(
            {
                "tenants": [
                    {"name": t.name, "parent": t.parent, "created": t.created, "quota": t.quota}
                    for t in self.service.list_tenants(who)
                ]
            }
        )

    async def create_tenant(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        body = await self._object(request)
        parent = body.get("parent")
        tenant = await self.service.create_tenant(
            who, str(body.get("name", "")), str(parent) if parent else None, body.get("quota")
        )
        return _json(
            {
                "name": tenant.name,
                "parent": tenant.parent,
                "created": tenant.created,
                "quota": tenant.quota,
            },
            201,
        )

    async def create_token(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        body = await self._object(request)
        tenant = str(body.get("tenant") or who.tenant)
        token = await self.service.create_token(who, tenant, str(body.get("description", "")))
        return _json({"tenant": tenant, "token": token}, 201)

    def site_view(self, site: Site, who: Principal | None = None) -> dict[str, Any]:
        tenants = site.tenants
        if who is not None and not who.is_admin:
            tenants = [t for t in tenants if t in who.visible]
        return {
            "name": site.name,
            "labels": site.all_labels,
            "tenants": tenants,
            "state": site.state,
            "revision": site.revision,
            "applied_revision": site.applied_revision,
            "in_sync": site.in_sync,
            "connected": site.name in self.service.desired.polling,
            "last_contact": site.last_contact,
            "enrolled": site.enrolled,
            "created": site.created,
            "status_time": site.status_time,
        }

    async def list_sites(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        return _json({"sites": [self.site_view(s, who) for s in self.service.list_sites(who)]})

    async def get_site(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        site = self.service.site(who, request.match_info["name"])
        view = self.site_view(site, who)
        status = site.status
        desired = json.loads(self.service.fleet.desired_body(site))["applications"]
        if not who.is_admin:
            desired = [a for a in desired if a.get("tenant") in who.visible]
            if status is not None:
                status = {
                    **status,
                    "instances": [
                        i
                        for i in status.get("instances", [])
                        if isinstance(i, dict) and self.service.visible_app(who, i.get("app"))
                    ],
                }
        view["status"] = status
        view["desired"] = desired
        view["vaults"] = [
            {"name": v.name, "version": v.version, "unseal": v.unseal}
            for v in self.service.vaults_for_site(site)
            if v.tenant in who.visible
        ]
        return _json(view)

    async def patch_site(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        body = await self._object(request)
        labels = body.get("labels", {})
        if (
            set(body) - {"labels"}
            or not isinstance(labels, dict)
            or not all(isinstance(v, str | None) for v in labels.values())
        ):
            raise Invalid('send {"labels": {"key": "value" or null}}')
        site = await self.service.label_site(who, request.match_info["name"], labels)
        return _json(self.site_view(site, who))

    async def assign_site(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        body = await self._object(request)
        site = await self.service.assign_site(
            who, request.match_info["name"], str(body.get("tenant", ""))
        )
        return _json(self.site_view(site))

    async def revoke_site(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        site = await self.service.revoke_site(who, request.match_info["name"])
        return _json(self.site_view(site))

    async def site_events(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        limit = _int_query(request, "limit", 100, 1, 1000)
        events = await self.service.site_events(who, request.match_info["name"], limit)
        return _json({"events": events})

    async def list_apps(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        apps: dict[str, dict[str, Any]] = {}
        for a in self.service.list_apps(who):
            entry = apps.setdefault(a.name, {"name": a.name, "tenant": a.tenant, "versions": []})
            entry["versions"].append(a.version)
        for entry in apps.values():
            entry["latest"] = entry["versions"][-1]
        return _json({"applications": list(apps.values())})

    async def get_app(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        name = request.match_info["name"]
        versions = [a for a in self.service.list_apps(who) if a.name == name]
        if not versions:
            raise NotFound(f"application {name} does not exist")
        return _json(
            {
                "name": name,
                "tenant": versions[0].tenant,
                "latest": versions[-1].version,
                "versions": [
                    {"version": a.version, "created": a.created, "digest": a.digest}
                    for a in versions
                ],
                "spec": versions[-1].document,
            }
        )

    async def get_app_version(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        app = self.service.app_version(
            who, request.match_info["name"], request.match_info["version"]
        )
        return _json(
            {
                "name": app.name,
                "version": app.version,
                "tenant": app.tenant,
                "created": app.created,
                "digest": app.digest,
                "spec": app.document,
            }
        )

    async def put_app_version(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        body = await self._body(request)
        created, app = await self.service.push_app(
            who, request.match_info["name"], request.match_info["version"], body
        )
        return _json(
            {
                "name": app.name,
                "version": app.version,
                "tenant": app.tenant,
                "digest": app.digest,
                "created": created,
            },
            201 if created else 200,
        )

    def deployment_view(self, state: Any) -> dict[str, Any]:
        rollout: dep.Rollout | None = state.rollout
        return {
            "name": state.record.name,
            "tenant": state.record.tenant,
            "spec": state.record.document,
            "created": state.record.created,
            "updated": state.record.updated,
            "target": rollout.target if rollout else None,
            "phase": rollout.phase.value if rollout else "waiting",
            "message": rollout.message if rollout else "no version of the application yet",
        }

    async def list_deployments(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        return _json(
            {"deployments": [self.deployment_view(d) for d in self.service.list_deployments(who)]}
        )

    async def get_deployment(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        return _json(self.deployment_view(self.service.deployment(who, request.match_info["name"])))

    async def put_deployment(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        body = await self._object(request)
        if body.get("name") != request.match_info["name"]:
            raise Invalid(
                f"the spec names deployment {body.get('name')!r}, the URL "
                f"{request.match_info['name']!r}",
                [("name", "differs from the URL")],
            )
        outcome, _ = await self.service.put_deployment(who, body)
        view = self.deployment_view(self.service.deployments[request.match_info["name"]])
        view["outcome"] = outcome
        return _json(view, 201 if outcome == "created" else 200)

    async def delete_deployment(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        await self.service.delete_deployment(who, request.match_info["name"])
        return _json({"deleted": request.match_info["name"]})

    async def deployment_status(self, request: web.Request) -> web.Response:
        who = await self._principal(request)
        state = self.service.deployment(who, request.match_info["name"])
        app = state.spec.application
        sites = []
        for site in sorted(self.service.deployment_sites(state), key=lambda s: s.name):
            version = state.rollout.version_for(site.name) if state.rollout else None
            instances = [
                i
                for i in (site.status or {}).get("instances", [])
                if isinstance(i, dict) and i.get("app") == app
            ]
            sites.append(
                {
                    "site": site.name,
                    "version": version,
                    "in_sync": site.in_sync,
                    "instances": len(instances),
                    "running": sum(1 for i in instances if i.get("state") == "running"),
                    "ready": sum(1 for i in instances if i.get("ready")),
                    "connected": site.name in self.service.desired.polling,
                    "last_contact": site.last_contact,
                    "failed": site.failed.get(app, ""),
                }
            )
        view = self.deployment_view(state)
        view["sites"] = sites
        return _json(view)

    # --- sites (mutual TLS) ---------------------------------------------------------------

    def _site(self, request: web.Request) -> Site:
        transport = request.transport
        peercert = transport.get_extra_info("peercert") if transport is not None else None
        return self.service.site_for_certificate(peercert)

    async def sync_desired(self, request: web.Request) -> web.StreamResponse:
        site = self._site(request)
        revision = _int_query(request, "revision", 0, 0, 2**62)
        wait = min(
            float(_int_query(request, "wait", int(DEFAULT_WAIT), 0, int(MAX_WAIT))), MAX_WAIT
        )
        wait *= 1.0 - random.uniform(0.0, WAIT_JITTER)
        body = await self.service.wait_desired(site, revision, wait)
        if body is None:
            self.service.metrics.inc("desired_not_modified_total")
            return web.Response(status=304)
        self.service.metrics.inc("desired_sent_total")
        return web.Response(body=body, content_type="application/json")

    async def sync_status(self, request: web.Request) -> web.Response:
        site = self._site(request)
        body = await self._object(request)
        result = await self.service.push_status(
            site, body.get("seq"), body.get("status"), body.get("events", [])
        )
        if result.applied:
            return _json({"seq": result.last_seq, "applied": True})
        return _json({"seq": result.last_seq, "duplicate": True})


def _shed(retry: str) -> web.Response:
    response = error_response(503, "overloaded", "control is busy; retry later")
    response.headers["Retry-After"] = retry
    return response


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise Invalid(f"query parameter {name}={raw!r} is not an integer") from e
    if not low <= value <= high:
        raise Invalid(f"query parameter {name}={value} is out of range {low}..{high}")
    return value
