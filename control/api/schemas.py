"""JSON Schemas of the bodies control's API takes and answers with (OpenAPI 3.0 dialect).

Each is declared once here and named by the route table (`control.api.table`); the OpenAPI
document and the tests' checks of real answers both read them from there.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
NUMBER: Schema = {"type": "number"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
ANY: Schema = {}


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def obj(required: tuple[str, ...] = (), extra: bool = True, **properties: Schema) -> Schema:
    """An object with `properties`, of which `required` must be there; `extra`: others may."""
    schema: Schema = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    if not extra:
        schema["additionalProperties"] = False
    return schema


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def string_map(values: Schema = STRING) -> Schema:
    return {"type": "object", "additionalProperties": values}


ERROR = obj(
    ("error",),
    error=obj(
        ("code", "message"),
        code=STRING,
        message=STRING,
        errors=array(obj(("path", "message"), path=STRING, message=STRING)),
    ),
)

HEALTH = obj(("status",), status=STRING)

ENROLL_REQUEST = obj(("site", "secret", "csr"), site=STRING, secret=STRING, csr=STRING)
ENROLLED = obj(("site", "certificate", "ca"), site=STRING, certificate=STRING, ca=STRING)
BUNDLE_REQUEST = obj(("site",), site=STRING, labels=nullable(string_map()), ttl=NUMBER)
BUNDLE = obj(("site", "bundle", "expires"), site=STRING, bundle=STRING, expires=NUMBER)

QUOTA = string_map(NUMBER)
TENANT = obj(
    ("name", "parent", "created", "quota"),
    name=STRING,
    parent=nullable(STRING),
    created=NUMBER,
    quota=QUOTA,
)
TENANTS = obj(("tenants",), tenants=array(TENANT))
TENANT_REQUEST = obj(
    ("name",), name=STRING, parent=nullable(STRING), quota=nullable({"oneOf": [STRING, QUOTA]})
)
TOKEN_REQUEST = obj(tenant=nullable(STRING), description=STRING)
TOKEN = obj(("tenant", "token"), tenant=STRING, token=STRING)

SITE = obj(
    ("name", "labels", "tenants", "state", "revision", "in_sync", "connected", "created"),
    name=STRING,
    labels=string_map(),
    tenants=array(STRING),
    state={"type": "string", "enum": ["pending", "enrolled", "revoked"]},
    revision=INTEGER,
    applied_revision=nullable(INTEGER),
    in_sync=BOOLEAN,
    connected=BOOLEAN,
    last_contact=nullable(NUMBER),
    enrolled=nullable(NUMBER),
    created=NUMBER,
    status_time=nullable(NUMBER),
)
SITES = obj(("sites",), sites=array(SITE))
SITE_DETAIL = {
    "allOf": [
        SITE,
        obj(
            ("status", "desired", "vaults"),
            status=nullable({"type": "object"}),
            desired=array({"type": "object"}),
            vaults=array(obj(name=STRING, version=INTEGER, unseal=STRING)),
        ),
    ]
}
LABELS_REQUEST = obj(("labels",), False, labels=string_map(nullable(STRING)))
ASSIGN_REQUEST = obj(("tenant",), tenant=STRING)
EVENTS = obj(
    ("events",), events=array(obj(("seq", "received", "event"), seq=INTEGER, received=NUMBER))
)

APPLICATIONS = obj(
    ("applications",),
    applications=array(
        obj(
            ("name", "tenant", "versions", "latest"),
            name=STRING,
            tenant=STRING,
            versions=array(STRING),
            latest=STRING,
        )
    ),
)
APPLICATION = obj(
    ("name", "tenant", "latest", "versions", "spec"),
    name=STRING,
    tenant=STRING,
    latest=STRING,
    versions=array(obj(version=STRING, created=NUMBER, digest=STRING)),
    spec={"type": "object"},
)
APP_VERSION = obj(
    ("name", "version", "tenant", "created", "digest", "spec"),
    name=STRING,
    version=STRING,
    tenant=STRING,
    created=NUMBER,
    digest=STRING,
    spec={"type": "object"},
)
APP_SPEC = {"type": "object", "description": "An application spec (docs: application format)"}
APP_PUSHED = obj(
    ("name", "version", "tenant", "digest", "created"),
    name=STRING,
    version=STRING,
    tenant=STRING,
    digest=STRING,
    created=BOOLEAN,
)

DEPLOYMENT_SPEC = {"type": "object", "description": "A deployment spec (docs: deployments)"}
DEPLOYMENT = obj(
    ("name", "tenant", "spec", "created", "updated", "target", "phase", "message"),
    name=STRING,
    tenant=STRING,
    spec=DEPLOYMENT_SPEC,
    created=NUMBER,
    updated=NUMBER,
    target=nullable(STRING),
    phase=STRING,
    message=STRING,
    since=nullable(NUMBER),
    history=array(
        obj(
            ("target", "phase", "started", "ended"),
            target=STRING,
            phase=STRING,
            started=NUMBER,
            ended=NUMBER,
            sites=INTEGER,
            message=STRING,
        )
    ),
    outcome={"type": "string", "enum": ["created", "updated", "unchanged"]},
)
DEPLOYMENTS = obj(("deployments",), deployments=array(DEPLOYMENT))
ROLLOUT_ACTION = obj((), reason=STRING)  # pause, resume, rollback: why (optional)
DEPLOYMENT_STATUS = {
    "allOf": [
        DEPLOYMENT,
        obj(
            ("sites",),
            sites=array(
                obj(
                    ("site", "version", "in_sync", "instances", "running", "ready"),
                    site=STRING,
                    version=nullable(STRING),
                    in_sync=BOOLEAN,
                    instances=INTEGER,
                    running=INTEGER,
                    ready=INTEGER,
                    connected=BOOLEAN,
                    last_contact=nullable(NUMBER),
                    failed=STRING,
                    health={"type": "string", "enum": ["healthy", "waiting", "failed", "offline"]},
                    since=nullable(NUMBER),
                )
            ),
        ),
    ]
}
DELETED = obj(("deleted",), deleted=STRING, version=INTEGER)

DESIRED = obj(
    ("revision", "applications", "vaults", "quotas"),
    revision=INTEGER,
    applications=array(
        obj(
            ("name", "version", "tenant", "spec"),
            name=STRING,
            version=STRING,
            tenant=STRING,
            deployment=STRING,
            spec=APP_SPEC,
        )
    ),
    vaults=array({"type": "object"}),
    quotas=array(obj(tenant=STRING, members=array(STRING), quota=QUOTA)),
)
STATUS_REQUEST = obj(("seq",), seq=INTEGER, status=nullable({"type": "object"}), events=array(ANY))
STATUS_ANSWER = obj(("seq",), seq=INTEGER, applied=BOOLEAN, duplicate=BOOLEAN)
VAULT_KEY = obj(("key",), key=STRING)

VAULT = obj(
    ("name", "tenant", "distribute", "unseal", "version", "secrets", "created", "updated"),
    name=STRING,
    tenant=STRING,
    distribute=STRING,
    unseal={"type": "string", "enum": ["local", "remote"]},
    version=INTEGER,
    secrets=string_map(array(STRING)),
    created=NUMBER,
    updated=NUMBER,
)
VAULTS = obj(("vaults",), vaults=array(VAULT))
# the answer to PUT: "created" says whether the vault is new (not when it was made)
VAULT_CHANGED = {**VAULT, "properties": {**VAULT["properties"], "created": BOOLEAN}}
VAULT_REQUEST = obj(
    ("distribute",),
    False,
    name=STRING,
    distribute=STRING,
    unseal={"type": "string", "enum": ["local", "remote"]},
    tenant=STRING,
)
SECRET = obj(
    ("vault", "secret", "keys", "version"),
    vault=STRING,
    secret=STRING,
    keys=array(STRING),
    version=INTEGER,
)
SECRET_REQUEST = obj(("data",), False, data=string_map())
