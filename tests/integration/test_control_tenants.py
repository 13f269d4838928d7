"""Vaults and tenants against a real `edge-control serve`, with sites as in-process SyncClients."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from control.cli.client import ApiError
from enforcer.shared.sealing import unseal
from tests.support.control import ControlProcess, Site, api_error, app_document, run

SECRET_VALUE = "pa55-Vx9-unique-secret-value-7f3a"
ROTATED_VALUE = "rotated-Qz8-unique-secret-value-2b1c"


class VaultSite:
    """A site that records the vaults its SyncClient hands over (before the applications)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.vaults: list[dict[str, Any]] | None = None
        self.order: list[str] = []
        site.options["on_vaults"] = self.on_vaults
        original = site._on_desired

        async def on_desired(revision: int, applications: list[dict[str, Any]]) -> None:
            self.order.append("desired")
            await original(revision, applications)

        site._on_desired = on_desired  # type: ignore[method-assign]

    @classmethod
    async def enroll(cls, control: ControlProcess, name: str, labels: dict[str, str]) -> VaultSite:
        return cls(await Site.enroll(control, name, labels))

    async def on_vaults(self, vaults: list[dict[str, Any]]) -> None:
        self.order.append("vaults")
        self.vaults = vaults

    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(
            self.site.identity.key_path.read_bytes(), password=None
        )
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def opened(self) -> dict[str, Any]:
        """vault -> (version, unseal, secrets) as this site opens them."""
        return {
            v["name"]: (
                v["version"],
                v["unseal"],
                unseal(v["sealed"], self.key(), site=self.site.identity.site),
            )
            for v in self.vaults or []
        }


def test_only_matching_sites_get_the_vault_sealed_to_their_key_and_rotation_reaches_them(
    control: ControlProcess, tmp_path: Path
) -> None:
    async def scenario() -> None:
        inside = await VaultSite.enroll(control, "store-1", {"customer": "acme"})
        outside = await VaultSite.enroll(control, "store-2", {"customer": "other"})
        inside.site.start()
        outside.site.start()
        create = await asyncio.to_thread(
            control.cli, "vault", "create", "vision", "--distribute", "customer = acme"
        )
        assert create.returncode == 0, create.stderr
        value_file = tmp_path / "token.txt"
        value_file.write_text(SECRET_VALUE)
        put = await asyncio.to_thread(
            control.cli,
            "secret",
            "put",
            "vision",
            "creds",
            "api-key=@" + str(value_file),
            "user=bot",
        )
        assert put.returncode == 0, put.stderr
        assert SECRET_VALUE not in put.stdout + put.stderr
        await inside.site.wait_for(lambda: "vision" in inside.opened())
        assert inside.opened()["vision"] == (
            2,
            "local",
            {"creds": {"api-key": SECRET_VALUE, "user": "bot"}},
        )
        assert inside.order[:2] == ["vaults", "desired"]  # vaults before the applications
        await outside.site.wait_for(lambda: outside.vaults is not None)
        assert outside.vaults == []
        # rotation while the site is away: it gets the new version when it comes back
        await inside.site.stop()
        control.client().put(
            "/v1/vaults/vision/secrets/creds", {"data": {"api-key": ROTATED_VALUE}}
        )
        inside.vaults = None
        inside.site.start()
        await inside.site.wait_for(lambda: inside.opened().get("vision", (0,))[0] == 3, timeout=15)
        assert inside.opened()["vision"][2] == {"creds": {"api-key": ROTATED_VALUE}}
        # remote unseal: the site's vault key comes from control, the same every time
        control.client().put(
            "/v1/vaults/vision", {"distribute": "customer = acme", "unseal": "remote"}
        )
        await inside.site.wait_for(lambda: inside.opened()["vision"][1] == "remote")
        assert inside.site.client is not None
        key = await inside.site.client.fetch_vault_key()
        assert len(key) == 32 and key == await inside.site.client.fetch_vault_key()
        # revocation: secret rm, then vault rm
        rm = await asyncio.to_thread(control.cli, "secret", "rm", "vision", "creds")
        assert rm.returncode == 0, rm.stderr
        await inside.site.wait_for(lambda: inside.opened()["vision"][2] == {})
        await asyncio.to_thread(control.cli, "vault", "rm", "vision")
        await inside.site.wait_for(lambda: inside.vaults == [])
        await inside.site.stop()
        await outside.site.stop()

    run(scenario())


def test_a_secret_value_never_leaks(control: ControlProcess) -> None:
    admin = control.client()
    admin.put("/v1/vaults/vision", {"distribute": "customer = acme"})
    admin.put("/v1/vaults/vision/secrets/creds", {"data": {"api-key": SECRET_VALUE}})
    seen = [
        json.dumps(admin.get("/v1/vaults")),
        json.dumps(admin.get("/v1/vaults/vision")),
        json.dumps(admin.get("/v1/vaults/vision/secrets/creds")),
    ]
    too_big = "x" * (64 * 1024) + SECRET_VALUE
    errors = [
        api_error(lambda: admin.put("/v1/vaults/vision/secrets/big", {"data": {"k": too_big}})),
        api_error(
            lambda: admin.put("/v1/vaults/vision/secrets/Bad_Name", {"data": {"k": SECRET_VALUE}})
        ),
        api_error(lambda: admin.put("/v1/vaults/vision/secrets/x", {"data": {"k": 1}})),
    ]
    assert errors[0].status == 422 and "vision/big" in str(errors[0])
    seen += [str(e) for e in errors]
    listing = subprocess.run(
        control.command("secret", "ls", "vision", "-o", "json"), capture_output=True, text=True
    )
    assert json.loads(listing.stdout) == {"vault": "vision", "secrets": {"creds": ["api-key"]}}
    seen.append(listing.stdout + listing.stderr)
    control.stop()
    seen.append(control.log.read_text())
    seen.append((control.state_dir / "control.db").read_bytes().decode("latin-1"))
    for path in control.state_dir.glob("control.db*"):
        seen.append(path.read_bytes().decode("latin-1"))
    for text in seen:
        assert SECRET_VALUE not in text
        assert base64.b64encode(SECRET_VALUE.encode()).decode() not in text
    control.start()


def test_a_wrong_master_key_makes_control_refuse_to_start(control: ControlProcess) -> None:
    control.client().put("/v1/vaults/vision", {"distribute": "customer = acme"})
    control.stop()
    master = control.state_dir / "master.key"
    original = master.read_bytes()
    master.write_bytes(bytes(32))
    with pytest.raises(RuntimeError, match=r"master\.key"):
        control.start()
    assert "refuses to start" in control.log.read_text()
    master.write_bytes(original)
    control.start()
    assert [v["name"] for v in control.client().get("/v1/vaults")["vaults"]] == ["vision"]


def test_an_app_naming_a_missing_secret_is_refused_at_push(control: ControlProcess) -> None:
    admin = control.client()
    doc = app_document("vision", "1")
    doc["services"][0]["volumes"] = [
        {"name": "creds", "secret": {"vault": "vision", "secret": "creds"}}
    ]
    error = api_error(lambda: admin.put("/v1/applications/vision/versions/1", doc))
    assert error.status == 422 and "vision" in str(error)
    admin.put("/v1/vaults/vision", {"distribute": "customer = acme"})
    error = api_error(lambda: admin.put("/v1/applications/vision/versions/1", doc))
    assert error.status == 422 and "creds" in str(error)
    admin.put("/v1/vaults/vision/secrets/creds", {"data": {"api-key": SECRET_VALUE}})
    assert admin.put("/v1/applications/vision/versions/1", doc)["created"] is True


# --- tenants ---------------------------------------------------------------------------------

# every operator route, with the other tenant's objects in it (method, path, body)
ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/enrollment/tokens", {"site": "beta-site"}),
    ("POST", "/v1/tenants", {"name": "beta-child", "parent": "beta"}),
    ("POST", "/v1/tokens", {"tenant": "beta"}),
    ("GET", "/v1/sites/beta-site", None),
    ("PATCH", "/v1/sites/beta-site", {"labels": {"x": "y"}}),
    ("POST", "/v1/sites/beta-site/assign", {"tenant": "alpha"}),
    ("POST", "/v1/sites/beta-site/revoke", {}),
    ("GET", "/v1/sites/beta-site/events", None),
    ("GET", "/v1/applications/beta-app", None),
    ("GET", "/v1/applications/beta-app/versions/1", None),
    ("PUT", "/v1/applications/beta-app/versions/2", app_document("beta-app", "2")),
    ("GET", "/v1/deployments/beta-deploy", None),
    ("PUT", "/v1/deployments/beta-deploy", None),  # body set below
    ("DELETE", "/v1/deployments/beta-deploy", None),
    ("GET", "/v1/deployments/beta-deploy/status", None),
    ("GET", "/v1/vaults/beta-vault", None),
    ("PUT", "/v1/vaults/beta-vault", {"distribute": "customer = beta"}),
    ("DELETE", "/v1/vaults/beta-vault", None),
    ("GET", "/v1/vaults/beta-vault/secrets/beta-secret", None),
    ("PUT", "/v1/vaults/beta-vault/secrets/beta-secret", {"data": {"k": "v"}}),
    ("DELETE", "/v1/vaults/beta-vault/secrets/beta-secret", None),
]
LISTINGS = ["/v1/tenants", "/v1/sites", "/v1/applications", "/v1/deployments", "/v1/vaults"]
BETA_NAMES = ["beta-site", "beta-app", "beta-deploy", "beta-vault", "beta-secret", SECRET_VALUE]


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlProcess, str]]:
    process = ControlProcess(tmp_path_factory.mktemp("tenants"))
    process.start()
    admin = process.client()
    for name in ("alpha", "beta"):
        admin.post("/v1/tenants", {"name": name, "parent": "system"})
    beta = process.client(admin.post("/v1/tokens", {"tenant": "beta"})["token"])
    alpha_token = str(admin.post("/v1/tokens", {"tenant": "alpha"})["token"])
    process.bundle("beta-site", {"customer": "beta"})
    admin.post("/v1/sites/beta-site/assign", {"tenant": "beta"})
    beta.put("/v1/vaults/beta-vault", {"distribute": "customer = beta"})
    beta.put("/v1/vaults/beta-vault/secrets/beta-secret", {"data": {"k": SECRET_VALUE}})
    beta.put("/v1/applications/beta-app/versions/1", app_document("beta-app", "1"))
    beta.put("/v1/deployments/beta-deploy", beta_deployment())
    yield process, alpha_token
    process.stop()


def beta_deployment() -> dict[str, Any]:
    return {
        "name": "beta-deploy",
        "application": "beta-app",
        "version": "latest",
        "placement": {"all-sites": True},
    }


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_a_tenant_cannot_reach_another_tenants_objects(
    two_tenants: tuple[ControlProcess, str], method: str, path: str, body: Any
) -> None:
    control, alpha_token = two_tenants
    alpha = control.client(alpha_token)
    if path == "/v1/deployments/beta-deploy" and method == "PUT":
        body = beta_deployment()
    try:
        alpha.request(method, path, body)
    except ApiError as e:
        assert e.status in (403, 404), (e.status, str(e))
        message = str(e)
        for name in BETA_NAMES:
            if name not in path and name not in json.dumps(body):
                assert name not in message
        assert SECRET_VALUE not in message
        if '"beta"' not in json.dumps(body):  # the tenant's name, unless the caller gave it
            assert "tenant beta" not in message and "tenant 'beta'" not in message
    else:
        raise AssertionError(f"{method} {path} succeeded for another tenant")
    # nothing changed for beta
    admin = control.client()
    assert admin.get("/v1/deployments/beta-deploy")["tenant"] == "beta"
    assert admin.get("/v1/vaults/beta-vault")["secrets"] == {"beta-secret": ["k"]}


def test_a_tenants_listings_show_nothing_of_another_tenant(
    two_tenants: tuple[ControlProcess, str],
) -> None:
    control, alpha_token = two_tenants
    alpha = control.client(alpha_token)
    for path in LISTINGS:
        text = json.dumps(alpha.get(path))
        for name in ["beta", *BETA_NAMES]:
            assert name not in text, (path, name)


def test_a_tenant_deploys_only_within_its_per_site_quota(control: ControlProcess) -> None:
    admin = control.client()
    made = control.cli(
        "tenant", "create", "acme", "--parent", "system", "--quota", "cpus=1,memory=1Gi,gpus=0"
    )
    assert made.returncode == 0, made.stderr
    control.bundle("store-1", {"customer": "acme"})
    admin.post("/v1/sites/store-1/assign", {"tenant": "acme"})
    acme = control.client(admin.post("/v1/tokens", {"tenant": "acme"})["token"])
    doc = app_document("heavy", "1")
    doc["services"][0]["replicas"] = 3
    doc["services"][0]["resources"] = {"cpus": 0.5}
    acme.put("/v1/applications/heavy/versions/1", doc)
    error = api_error(
        lambda: acme.put(
            "/v1/deployments/heavy",
            {
                "name": "heavy",
                "application": "heavy",
                "version": "1",
                "placement": {"all-sites": True},
            },
        )
    )
    assert error.status == 422
    assert "store-1" in str(error) and "cpus" in str(error)
    assert acme.get("/v1/deployments")["deployments"] == []
    tenants = {t["name"]: t for t in admin.get("/v1/tenants")["tenants"]}
    assert tenants["acme"]["quota"] == {"cpus": 1.0, "memory": float(1 << 30), "gpus": 0.0}


def test_a_site_shared_by_two_tenants_shows_each_only_its_own(control: ControlProcess) -> None:
    admin = control.client()
    tokens = {}
    for name in ("alpha", "beta"):
        admin.post("/v1/tenants", {"name": name, "parent": "system"})
        tokens[name] = str(admin.post("/v1/tokens", {"tenant": name})["token"])
    alpha, beta = control.client(tokens["alpha"]), control.client(tokens["beta"])

    async def scenario() -> None:
        shared = await Site.enroll(control, "shared", {"customer": "both"})
        for name in ("alpha", "beta"):
            admin.post("/v1/sites/shared/assign", {"tenant": name})
        shared.start()
        for client, name in ((alpha, "alpha"), (beta, "beta")):
            client.put(f"/v1/applications/{name}-app/versions/1", app_document(f"{name}-app", "1"))
            client.put(
                f"/v1/deployments/{name}-deploy",
                {
                    "name": f"{name}-deploy",
                    "application": f"{name}-app",
                    "version": "1",
                    "placement": {"all-sites": True},
                },
            )
        beta.put("/v1/vaults/beta-vault", {"distribute": "customer = both"})
        beta.put("/v1/vaults/beta-vault/secrets/beta-secret", {"data": {"k": SECRET_VALUE}})
        await shared.wait_for(lambda: shared.app_names == ["alpha-app@1", "beta-app@1"])
        assert shared.client is not None
        for name in ("alpha", "beta"):
            shared.client.push_event({"app": f"{name}-app", "message": f"{name}-app started"})

        def events_arrived() -> bool:
            return len(admin.get("/v1/sites/shared/events")["events"]) >= 2

        for _ in range(100):
            if events_arrived() and admin.get("/v1/sites/shared")["status"]:
                break
            await asyncio.sleep(0.1)
        assert events_arrived()
        view = alpha.get("/v1/sites/shared")
        assert view["tenants"] == ["alpha"]
        assert [a["name"] for a in view["desired"]] == ["alpha-app"]
        assert view["vaults"] == []
        assert {i["app"] for i in view["status"]["instances"]} == {"alpha-app"}
        events = alpha.get("/v1/sites/shared/events")["events"]
        assert [e["event"]["app"] for e in events] == ["alpha-app"]
        status = alpha.get("/v1/deployments/alpha-deploy/status")
        for text in (json.dumps(view), json.dumps(events), json.dumps(status)):
            for hidden in ("beta", SECRET_VALUE):
                assert hidden not in text
        await shared.stop()

    run(scenario())
