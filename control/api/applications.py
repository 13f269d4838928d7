"""Control's API for applications and deployments."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control.api.context import ApiContext, json_response, read_json, read_object, text_field
from control.fleet.rollout import site_health
from control.fleet.state import DeploymentState
from control.model import Invalid, NotFound


async def list_apps(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    apps: dict[str, dict[str, Any]] = {}
    for a in api.service.apps.visible(who):
        entry = apps.setdefault(a.name, {"name": a.name, "tenant": a.tenant, "versions": []})
        entry["versions"].append(a.version)
    for entry in apps.values():
        entry["latest"] = entry["versions"][-1]
    return json_response({"applications": list(apps.values())})


async def get_app(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    name = request.match_info["name"]
    versions = [a for a in api.service.apps.visible(who) if a.name == name]
    if not versions:
        raise NotFound(f"application {name} does not exist")
    return json_response(
        {
            "name": name,
            "tenant": versions[0].tenant,
            "latest": versions[-1].version,
            "versions": [
                {"version": a.version, "created": a.created, "digest": a.digest} for a in versions
            ],
            "spec": versions[-1].document,
        }
    )


async def get_app_version(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    app = api.service.apps.version(who, request.match_info["name"], request.match_info["version"])
    return json_response(
        {
            "name": app.name,
            "version": app.version,
            "tenant": app.tenant,
            "created": app.created,
            "digest": app.digest,
            "spec": app.document,
        }
    )


async def put_app_version(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    body = await read_json(request)
    created, app = await api.service.apps.push(
        who, request.match_info["name"], request.match_info["version"], body
    )
    return json_response(
        {
            "name": app.name,
            "version": app.version,
            "tenant": app.tenant,
            "digest": app.digest,
            "created": created,
        },
        201 if created else 200,
    )


def deployment_view(state: DeploymentState) -> dict[str, Any]:
    rollout = state.rollout
    history = list(rollout.history) if rollout else []
    if rollout is not None and rollout.phase.finished:
        history.append(rollout.summary(rollout.since))
    return {
        "name": state.record.name,
        "tenant": state.record.tenant,
        "spec": state.record.document,
        "created": state.record.created,
        "updated": state.record.updated,
        "target": rollout.target if rollout else None,
        "phase": rollout.phase.value if rollout else "waiting",
        "message": rollout.message if rollout else "no version of the application yet",
        "since": rollout.since if rollout else None,
        "history": history,
    }


async def list_deployments(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    states = api.service.deployments.visible(who)
    return json_response({"deployments": [deployment_view(d) for d in states]})


async def get_deployment(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    return json_response(
        deployment_view(api.service.deployments.get(who, request.match_info["name"]))
    )


async def put_deployment(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    body = await read_object(request)
    name = request.match_info["name"]
    if body.get("name") != name:
        raise Invalid(
            f"the spec names deployment {body.get('name')!r}, the URL {name!r}",
            [("name", "differs from the URL")],
        )
    outcome, _ = await api.service.deployments.put(who, body)
    view = deployment_view(api.service.deployments.get(who, name))
    view["outcome"] = outcome
    return json_response(view, 201 if outcome == "created" else 200)


async def delete_deployment(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    await api.service.deployments.delete(who, request.match_info["name"])
    return json_response({"deleted": request.match_info["name"]})


async def deployment_status(api: ApiContext, request: web.Request) -> web.Response:
    who = await api.principal(request)
    service = api.service
    state = service.deployments.get(who, request.match_info["name"])
    app = state.spec.application
    polling = service.fleet.desired.polling
    views = {v.name: v for v in service.fleet.views(state, service.core.clock())}
    sites = []
    for site in sorted(service.deployments.sites(state), key=lambda s: s.name):
        version = state.rollout.version_for(site.name) if state.rollout else None
        seen = views.get(site.name)
        health, since = site_health(seen, site.last_contact) if seen else ("waiting", None)
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
                "connected": site.name in polling,
                "last_contact": site.last_contact,
                "failed": site.failed.get(app, ""),
                "health": health,
                "since": since,
            }
        )
    view = deployment_view(state)
    view["sites"] = sites
    return json_response(view)


async def _reason(request: web.Request) -> str:
    """The operator's optional reason for a rollout action (recorded in its message)."""
    if not request.can_read_body:
        return ""
    reason = text_field(await read_object(request), "reason", "").strip()
    if len(reason) > 200 or any(not c.isprintable() for c in reason):
        raise Invalid("reason must be one line of at most 200 characters",
                      [("reason", "too long or not one line")])  # fmt: skip
    return reason


async def pause_deployment(api: ApiContext, request: web.Request) -> web.Response:
    who, reason = await api.principal(request), await _reason(request)
    state = await api.service.deployments.pause(who, request.match_info["name"], reason)
    return json_response(deployment_view(state))


async def resume_deployment(api: ApiContext, request: web.Request) -> web.Response:
    who, reason = await api.principal(request), await _reason(request)
    state = await api.service.deployments.resume(who, request.match_info["name"], reason)
    return json_response(deployment_view(state))


async def rollback_deployment(api: ApiContext, request: web.Request) -> web.Response:
    who, reason = await api.principal(request), await _reason(request)
    state = await api.service.deployments.rollback(who, request.match_info["name"], reason)
    return json_response(deployment_view(state))
