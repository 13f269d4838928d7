"""Control's API for operators: enrollment bundles, tenants and tokens, sites; and enrolling."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from control.api.context import (
    ApiContext,
    int_query,
    json_response,
    optional_text,
    read_object,
    text_field,
)
from control.fleet.access import Principal
from control.model import Invalid, Site, Tenant

DEFAULT_TTL = 24 * 3600.0
MAX_TTL = 366 * 24 * 3600.0


async def enroll(api: ApiContext, request: web.Request) -> web.Response:
    body = await read_object(request)
    site, secret, csr = (text_field(body, key) for key in ("site", "secret", "csr"))
    cert = await api.service.enrollment.enroll(site, secret, csr)
    ca = api.service.authority.ca_pem.decode()
    return json_response({"site": site, "certificate": cert.decode(), "ca": ca}, 201)


async def ca(api: ApiContext, request: web.Request) -> web.Response:
    return web.Response(body=api.service.authority.ca_pem, content_type="application/x-pem-file")


async def create_site_token(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    body = await read_object(request)
    labels = body.get("labels")
    if labels is not None and not (
        isinstance(labels, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    ):
        raise Invalid("labels must map strings to strings", [("labels", "not a string map")])
    ttl = body.get("ttl", DEFAULT_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL:
        raise Invalid(
            f"ttl must be a number of seconds above 0 and at most {MAX_TTL:.0f}",
            [("ttl", "out of range")],
        )
    site = text_field(body, "site")
    bundle, expires = await api.service.enrollment.issue(who, site, labels, float(ttl))
    return json_response({"site": site, "bundle": bundle, "expires": expires}, 201)


def tenant_view(tenant: Tenant) -> dict[str, Any]:
    return {
        "name": tenant.name,
        "parent": tenant.parent,
        "created": tenant.created,
        "quota": tenant.quota,
    }


async def list_tenants(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    tenants = api.service.tenants.visible(who)
    return json_response({"tenants": [tenant_view(t) for t in tenants]})


async def create_tenant(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    body = await read_object(request)
    name, parent = text_field(body, "name"), optional_text(body, "parent")
    tenant = await api.service.tenants.create(who, name, parent or None, body.get("quota"))
    return json_response(tenant_view(tenant), 201)


async def create_token(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    body = await read_object(request)
    tenant = optional_text(body, "tenant") or who.tenant
    description = text_field(body, "description", "")
    token = await api.service.tenants.create_token(who, tenant, description)
    return json_response({"tenant": tenant, "token": token}, 201)


def site_view(api: ApiContext, site: Site, who: Principal | None = None) -> dict[str, Any]:
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
        "connected": site.name in api.service.fleet.desired.polling,
        "last_contact": site.last_contact,
        "enrolled": site.enrolled,
        "created": site.created,
        "status_time": site.status_time,
    }


async def list_sites(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    return json_response(
        {"sites": [site_view(api, s, who) for s in api.service.sites.visible(who)]}
    )


async def get_site(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    service = api.service
    site = service.sites.get(who, request.match_info["name"])
    view = site_view(api, site, who)
    status = site.status
    desired = json.loads(service.fleet.desired_body(site))["applications"]
    if not who.is_admin:
        desired = [a for a in desired if a.get("tenant") in who.visible]
        if status is not None:
            status = {
                **status,
                "instances": [
                    i
                    for i in status.get("instances", [])
                    if isinstance(i, dict) and service.fleet.app_visible(who.visible, i.get("app"))
                ],
            }
    view["status"] = status
    view["desired"] = desired
    view["vaults"] = [
        {"name": v.name, "version": v.version, "unseal": v.unseal}
        for v in service.vaults.for_site(site)
        if v.tenant in who.visible
    ]
    return json_response(view)


async def patch_site(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    body = await read_object(request)
    labels = body.get("labels", {})
    if (
        set(body) - {"labels"}
        or not isinstance(labels, dict)
        or not all(isinstance(v, str | None) for v in labels.values())
    ):
        raise Invalid('send {"labels": {"key": "value" or null}}')
    site = await api.service.sites.label(who, request.match_info["name"], labels)
    return json_response(site_view(api, site, who))


async def assign_site(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    body = await read_object(request)
    tenant = text_field(body, "tenant")
    site = await api.service.sites.assign(who, request.match_info["name"], tenant)
    return json_response(site_view(api, site))


async def revoke_site(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    site = await api.service.sites.revoke(who, request.match_info["name"])
    return json_response(site_view(api, site))


async def site_events(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    limit = int_query(request, "limit", 100, 1, 1000)
    events = await api.service.sites.events(who, request.match_info["name"], limit)
    return json_response({"events": events})
