"""Control's route table: every route once, with its handler, who may call it, and the schemas
of what it takes and answers. The server registers these routes and the OpenAPI document is
made from them (`control.api.openapi`), so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum

from aiohttp import web

from control.api import applications, events, gitsources, operators, public, sync, vaults
from control.api import schemas as s
from control.api.context import ApiContext

Handler = Callable[[ApiContext, web.Request], Awaitable[web.StreamResponse]]


class Auth(Enum):
    NONE = "none"
    TOKEN = "token"  # an operator's bearer token
    SITE = "site"  # the site's client certificate (mutual TLS)
    SECRET = "secret"  # a one-time enrollment secret in the body
    METRICS = "metrics"  # a bearer token unless metrics-public = true


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    minimum: int
    maximum: int
    text: bool = False  # a string (minimum and maximum unused), not an integer


def text_query(name: str, description: str) -> Query:
    return Query(name, description, 0, 0, text=True)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: Auth
    request: s.Schema | None = None
    answers: dict[int, s.Schema | str] = field(default_factory=dict)  # str: a content type
    query: tuple[Query, ...] = ()
    shed: bool = False  # costs work: 503 with Retry-After when control is busy


T, SITE, NONE = Auth.TOKEN, Auth.SITE, Auth.NONE
PEM, METRICS = "application/x-pem-file", public.CONTENT_TYPE

ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/health", public.health, "Liveness", NONE, None, {200: s.HEALTH}),
    Route("GET", "/v1/openapi.json", public.openapi, "This document", NONE, None, {200: s.ANY}),
    Route("GET", "/v1/metrics", public.metrics, "Prometheus metrics", Auth.METRICS, None,
          {200: METRICS}),
    Route("GET", "/v1/enrollment/ca", operators.ca,
          "Control's CA certificate (PEM); check it against the bundle's fingerprint", NONE,
          None, {200: PEM}),
    Route("POST", "/v1/enrollment", operators.enroll,
          "Enroll a site with a bundle's one-time secret and a CSR (EC P-256)", Auth.SECRET,
          s.ENROLL_REQUEST, {201: s.ENROLLED}, shed=True),
    Route("POST", "/v1/enrollment/tokens", operators.create_site_token,
          "Issue a one-time enrollment bundle for a site", T, s.BUNDLE_REQUEST, {201: s.BUNDLE}),
    Route("GET", "/v1/tenants", operators.list_tenants, "List tenants", T, None,
          {200: s.TENANTS}),
    Route("POST", "/v1/tenants", operators.create_tenant, "Create a tenant", T,
          s.TENANT_REQUEST, {201: s.TENANT}),
    Route("POST", "/v1/tokens", operators.create_token, "Create a token for a tenant", T,
          s.TOKEN_REQUEST, {201: s.TOKEN}),
    Route("GET", "/v1/sites", operators.list_sites, "List sites", T, None, {200: s.SITES}),
    Route("GET", "/v1/sites/{name}", operators.get_site,
          "A site with its status and desired state", T, None, {200: s.SITE_DETAIL}),
    Route("PATCH", "/v1/sites/{name}", operators.patch_site,
          "Change labels (a null value removes the label)", T, s.LABELS_REQUEST,
          {200: s.SITE}),
    Route("POST", "/v1/sites/{name}/assign", operators.assign_site,
          "Assign the site to a tenant", T, s.ASSIGN_REQUEST, {200: s.SITE}),
    Route("POST", "/v1/sites/{name}/revoke", operators.revoke_site,
          "Revoke the site's certificate", T, None, {200: s.SITE}),
    Route("GET", "/v1/sites/{name}/events", operators.site_events, "The site's latest events",
          T, None, {200: s.EVENTS}, (Query("limit", "How many (default 100)", 1, 1000),)),
    Route("GET", "/v1/sites/{name}/logs", events.site_logs,
          "An instance's latest log lines, asked of the site through its long-poll (query: "
          "instance, container); 503 site-offline, 504 site-timeout after 20 s", T, None,
          {200: events.LOG_LINES, 503: s.ERROR, 504: s.ERROR},
          (text_query("instance", "The instance, such as web.web.0 (required)"),
           text_query("container", "The container (default: the instance's first)"),
           Query("tail", "How many lines (default 100)", 1, 10000))),
    Route("GET", "/v1/events", events.list_events,
          "The fleet's events, oldest first (query: site, app); with after and wait, waits "
          "for newer ones", T, None, {200: events.EVENT_PAGE},
          (text_query("site", "Only this site's events"),
           text_query("app", "Only events about this application's instances"),
           Query("after", "Only events after this id (a page's last)", 0, 2**62),
           Query("limit", "How many (default 100)", 1, 1000),
           Query("wait", "Seconds to wait for an event after `after` (default 0)", 0, 300))),
    Route("GET", "/v1/applications", applications.list_apps,
          "List applications and their versions", T, None, {200: s.APPLICATIONS}),
    Route("GET", "/v1/applications/{name}", applications.get_app,
          "An application's versions and latest spec", T, None, {200: s.APPLICATION}),
    Route("GET", "/v1/applications/{name}/versions/{version}", applications.get_app_version,
          "One version's spec (version may be 'latest')", T, None, {200: s.APP_VERSION}),
    Route("PUT", "/v1/applications/{name}/versions/{version}", applications.put_app_version,
          "Push a version (201 new, 200 same spec, 409 different spec)", T, s.APP_SPEC,
          {201: s.APP_PUSHED, 200: s.APP_PUSHED}),
    Route("GET", "/v1/deployments", applications.list_deployments, "List deployments", T, None,
          {200: s.DEPLOYMENTS}),
    Route("GET", "/v1/deployments/{name}", applications.get_deployment,
          "A deployment and its rollout", T, None, {200: s.DEPLOYMENT}),
    Route("PUT", "/v1/deployments/{name}", applications.put_deployment,
          "Create or change a deployment", T, s.DEPLOYMENT_SPEC,
          {201: s.DEPLOYMENT, 200: s.DEPLOYMENT}),
    Route("DELETE", "/v1/deployments/{name}", applications.delete_deployment,
          "Delete a deployment", T, None, {200: s.DELETED}),
    Route("GET", "/v1/deployments/{name}/status", applications.deployment_status,
          "Per site: version, in sync, instances, contact", T, None,
          {200: s.DEPLOYMENT_STATUS}),
    Route("POST", "/v1/deployments/{name}/pause", applications.pause_deployment,
          "Pause its rollout: no further site moves", T, s.ROLLOUT_ACTION,
          {200: s.DEPLOYMENT}),
    Route("POST", "/v1/deployments/{name}/resume", applications.resume_deployment,
          "Resume a paused rollout", T, s.ROLLOUT_ACTION, {200: s.DEPLOYMENT}),
    Route("POST", "/v1/deployments/{name}/rollback", applications.rollback_deployment,
          "Every site that moved goes back to its earlier version", T, s.ROLLOUT_ACTION,
          {200: s.DEPLOYMENT}),
    Route("GET", "/v1/vaults", vaults.list_vaults,
          "List vaults: names, secrets and their keys, never values", T, None, {200: s.VAULTS}),
    Route("GET", "/v1/vaults/{vault}", vaults.get_vault,
          "A vault: distribution, unseal mode, secrets' keys", T, None, {200: s.VAULT}),
    Route("PUT", "/v1/vaults/{vault}", vaults.put_vault,
          "Create or change a vault", T, s.VAULT_REQUEST,
          {201: s.VAULT_CHANGED, 200: s.VAULT_CHANGED}),
    Route("DELETE", "/v1/vaults/{vault}", vaults.delete_vault,
          "Delete a vault: its sites lose it", T, None, {200: s.DELETED}),
    Route("GET", "/v1/vaults/{vault}/secrets/{secret}", vaults.get_secret,
          "A secret's keys (never values)", T, None, {200: s.SECRET}),
    Route("PUT", "/v1/vaults/{vault}/secrets/{secret}", vaults.put_secret,
          "Set a secret's keys and values", T, s.SECRET_REQUEST, {200: s.SECRET}),
    Route("DELETE", "/v1/vaults/{vault}/secrets/{secret}", vaults.delete_secret,
          "Revoke a secret", T, None, {200: s.DELETED}),
    Route("GET", "/v1/git-sources", gitsources.list_sources,
          "List Git sources and the state of each (never credentials)", T, None,
          {200: gitsources.GIT_SOURCES}),
    Route("GET", "/v1/git-sources/{name}", gitsources.get_source,
          "A Git source: last applied and seen commit, why that one was not applied (every "
          "error with file and path)", T, None, {200: gitsources.GIT_SOURCE}),
    Route("PUT", "/v1/git-sources/{name}", gitsources.put_source,
          "Add a Git source (409 when it exists); the answer holds its hook secret, shown once",
          T, gitsources.GIT_SOURCE_REQUEST, {201: gitsources.GIT_SOURCE_ADDED}),
    Route("DELETE", "/v1/git-sources/{name}", gitsources.delete_source,
          "Remove a Git source: what it applied stays, editable by hand again", T, None,
          {200: s.DELETED}),
    Route("POST", "/v1/git-sources/{name}/hook", gitsources.hook,
          "Poll the source now (a Git server's push hook): its hook secret as a bearer token, "
          "X-Edgeward-Hook-Secret, X-Gitlab-Token or ?secret=; 404 no such source, 401 wrong "
          "secret; the body (the server's payload) is not read", NONE, s.ANY,
          {202: gitsources.HOOK_ANSWER, 401: s.ERROR, 404: s.ERROR}),
    Route("GET", "/v1/sync/desired", sync.desired,
          "Long-poll the site's desired state: the new state on change, 304 after the wait",
          SITE, None, {200: sync.DESIRED_OR_REQUESTS, 304: "", 503: s.ERROR},
          (Query("revision", "The revision the site has", 0, 2**62),
           Query("wait", "Seconds to wait for a change (default 300)", 0, 900))),
    Route("POST", "/v1/sync/status", sync.status,
          "Push a status batch: applied once; a replay answers duplicate, a gap 409 naming "
          "the expected seq", SITE, s.STATUS_REQUEST, {200: s.STATUS_ANSWER}, shed=True),
    Route("POST", "/v1/sync/replies", sync.reply,
          "Answer a request handed out in a long-poll's answer (404: unknown or expired)", SITE,
          sync.REPLY, {200: sync.ACCEPTED}),
    Route("GET", "/v1/sync/vault-key", sync.vault_key,
          "The site's vault key for remote unseal (made on first request)", SITE, None,
          {200: s.VAULT_KEY}),
)  # fmt: skip
