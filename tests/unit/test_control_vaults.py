"""Vaults at control: the envelope, the master key, distribution, validation and quotas."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from control.fleet.access import Principal
from control.fleet.quota import app_usage, over_quota, parse_quota
from control.model import Invalid, NotFound, Site, Tenant
from control.service import ControlService
from control.store.sqlite import SQLiteStore
from control.vaults.envelope import (
    CryptoError,
    Envelope,
    MasterKeyError,
    Vault,
    distributed_to,
    load_or_create_master_key,
    secret_references,
)
from enforcer.shared.sealing import MAX_SECRET_BYTES, unseal
from tests.support.service import run_service

ADMIN = Principal("system", frozenset({"system", "acme", "other"}))
ACME = Principal("acme", frozenset({"acme"}))
OTHER = Principal("other", frozenset({"other"}))
VALUE = "s3cr3t-value-0123456789"


def test_the_master_key_is_made_once_private_and_32_bytes(tmp_path: Path) -> None:
    key, created = load_or_create_master_key(tmp_path)
    assert created and len(key) == 32
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_master_key(tmp_path) == (key, False)


def test_a_truncated_master_key_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "master.key").write_bytes(b"short")
    with pytest.raises(MasterKeyError, match=r"master\.key"):
        load_or_create_master_key(tmp_path)


def test_the_check_value_tells_a_wrong_master_key(tmp_path: Path) -> None:
    right, wrong = Envelope(b"a" * 32), Envelope(b"b" * 32)
    check = right.check_value()
    right.verify(check, tmp_path / "master.key")
    with pytest.raises(MasterKeyError, match=str(tmp_path / "master.key")):
        wrong.verify(check, tmp_path / "master.key")


def test_secrets_round_trip_under_a_wrapped_data_key_and_need_the_master_key() -> None:
    envelope = Envelope(b"k" * 32)
    _, wrapped = envelope.new_data_key("v")
    blob = envelope.close_vault(wrapped, {"creds": {"api-key": VALUE}}, "v")
    assert VALUE.encode() not in blob and VALUE.encode() not in wrapped
    assert envelope.open_vault(wrapped, blob, "v") == {"creds": {"api-key": VALUE}}
    with pytest.raises(CryptoError):
        Envelope(b"x" * 32).open_vault(wrapped, blob, "v")
    with pytest.raises(CryptoError):  # bound to its vault's name
        envelope.open_vault(wrapped, blob, "w")


def vault(name: str = "v", tenant: str = "acme", distribute: str = "zone = a") -> Vault:
    return Vault(name, tenant, distribute, "local", 1, b"", b"")


def site(name: str = "s1", labels: dict[str, str] | None = None, **kw: Any) -> Site:
    return Site(name, labels if labels is not None else {"zone": "a"}, 1.0, enrolled=1.0, **kw)


@pytest.mark.parametrize(
    ("the_vault", "the_site", "eligible", "expected"),
    [
        (vault(), site(), True, True),
        (vault(), site(labels={"zone": "b"}), True, False),
        (vault(), site(), False, False),  # the vault's tenant is not assigned to the site
        (vault(tenant="system"), site(), False, True),
        (vault(distribute="system/name = s2"), site(), True, False),
        (vault(), site(revoked=True), True, False),
        (vault(), Site("s1", {"zone": "a"}, 1.0), True, False),  # never enrolled
    ],
)
def test_a_vault_reaches_only_matching_sites_its_tenant_may_use(
    the_vault: Vault, the_site: Site, eligible: bool, expected: bool
) -> None:
    assert distributed_to(the_vault, the_site, eligible) is expected


def test_secret_references_are_found_in_variables_and_volumes() -> None:
    doc = {
        "services": [
            {
                "variables": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "value-from-secret": {"vault": "v", "secret": "s", "key": "k"}},
                ],
                "volumes": [{"name": "c", "secret": {"vault": "v", "secret": "t"}}],
            }
        ]
    }
    assert secret_references(doc) == [
        ("services[0].variables[1].value-from-secret", "v", "s", "k"),
        ("services[0].volumes[0].secret", "v", "t", None),
    ]


def test_quotas_parse_and_name_the_resource_over_the_limit() -> None:
    quota = parse_quota("cpus=2,memory=1Gi,gpus=0")
    assert quota == {"cpus": 2.0, "memory": float(1 << 30), "gpus": 0.0}
    with pytest.raises(Invalid, match="disk"):
        parse_quota("disk=1")
    app = {
        "services": [
            {"mode": "replicated", "replicas": 3, "resources": {"cpus": 0.5, "memory": "256Mi"}},
            {"mode": "one-per-matching-host", "resources": {}, "placement": {"gpus": 1}},
        ]
    }
    usage = app_usage(app)
    assert usage == {"cpus": 1.5, "memory": float(3 * 256 << 20), "gpus": 1.0}
    assert over_quota({"cpus": 2}, [usage]) is None
    assert over_quota({"cpus": 2}, [usage, usage]) == ("cpus", 3.0, 2.0)
    assert over_quota(quota, [usage]) == ("gpus", 1.0, 0.0)


# --- the service, in process ----------------------------------------------------------------


async def _tenants(service: ControlService, store: SQLiteStore) -> None:
    for name in ("acme", "other"):
        await service.tenants.create(ADMIN, name, "system")


def with_service(tmp_path: Path, body: Callable[[ControlService], Awaitable[Any]]) -> Any:
    return run_service(tmp_path, body, prepare=_tenants)


def add_site(
    service: ControlService, name: str, labels: dict[str, str], tenants: list[str]
) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    service.fleet.sites[name] = Site(
        name, labels, 1.0, tenants=tenants, enrolled=1.0, public_key=public.decode()
    )
    return key


async def recompute(service: ControlService) -> None:
    async with service.core.lock:
        await service.core.recompute()


async def desired(service: ControlService, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(await service.sync.desired_body(service.fleet.sites[name]))
    return result


def test_a_matching_site_gets_the_vault_sealed_to_its_key_and_others_never(
    tmp_path: Path,
) -> None:
    async def body(service: ControlService) -> None:
        key = add_site(service, "in", {"zone": "a"}, ["acme"])
        add_site(service, "out", {"zone": "b"}, ["acme"])
        add_site(service, "unassigned", {"zone": "a"}, ["other"])
        await recompute(service)
        await service.vaults.put(ACME, "v", "zone = a", "remote")
        before = service.fleet.sites["in"].revision
        await service.vaults.put_secret(ACME, "v", "creds", {"api-key": VALUE})
        assert service.fleet.sites["in"].revision == before + 1
        doc = await desired(service, "in")
        [entry] = doc["vaults"]
        assert (entry["name"], entry["tenant"], entry["version"], entry["unseal"]) == (
            "v",
            "acme",
            2,
            "remote",
        )
        assert unseal(entry["sealed"], key, site="in") == {"creds": {"api-key": VALUE}}
        assert (await service.sync.desired_body(service.fleet.sites["in"])).count(
            VALUE.encode()
        ) == 0
        assert (await desired(service, "in"))["vaults"][0]["sealed"] == entry["sealed"]  # cached
        assert (await desired(service, "out"))["vaults"] == []
        assert (await desired(service, "unassigned"))["vaults"] == []
        # relabelling the outside site brings it in; a revocation takes the secret away
        await service.core.change_site("out", labels={"zone": "a"})
        assert [v["name"] for v in (await desired(service, "out"))["vaults"]] == ["v"]
        revision = service.fleet.sites["in"].revision
        await service.vaults.delete_secret(ACME, "v", "creds")
        assert service.fleet.sites["in"].revision == revision + 1
        assert unseal((await desired(service, "in"))["vaults"][0]["sealed"], key, site="in") == {}
        await service.vaults.delete(ACME, "v")
        assert (await desired(service, "in"))["vaults"] == []

    with_service(tmp_path, body)


def test_vaults_survive_a_restart_and_a_wrong_master_key_is_refused(tmp_path: Path) -> None:
    async def body(service: ControlService) -> None:
        await service.vaults.put(ACME, "v", "zone = a")
        await service.vaults.put_secret(ACME, "v", "creds", {"api-key": VALUE})

    with_service(tmp_path, body)
    assert VALUE.encode() not in (tmp_path / "control.db").read_bytes()

    async def reopen(master: bytes) -> list[str]:
        store = SQLiteStore(tmp_path / "control.db")
        await store.open()
        service = ControlService(
            store,
            None,  # type: ignore[arg-type]
            "https://control",
            envelope=Envelope(master),
            master_key_path=tmp_path / "master.key",
        )
        try:
            await service.start()
            return [f"{v.name}:{sorted(v.keys)}" for v in service.vaults.visible(ACME)]
        finally:
            await service.stop()
            await store.close()

    assert asyncio.run(reopen(b"m" * 32)) == ["v:['creds']"]
    with pytest.raises(MasterKeyError, match=r"master\.key"):
        asyncio.run(reopen(b"w" * 32))


def test_secret_changes_are_checked_and_never_echo_values(tmp_path: Path) -> None:
    async def body(service: ControlService) -> None:
        await service.vaults.put(ACME, "v", "zone = a")
        with pytest.raises(Invalid, match="v/big") as error:
            await service.vaults.put_secret(ACME, "v", "big", {"k": "x" * (MAX_SECRET_BYTES + 1)})
        assert "xxxx" not in str(error.value)
        with pytest.raises(Invalid, match="distribute"):
            await service.vaults.put(ACME, "w", "zone = = a")
        with pytest.raises(NotFound):
            await service.vaults.put_secret(OTHER, "v", "creds", {"k": VALUE})
        with pytest.raises(NotFound):
            service.vaults.get(OTHER, "v")
        assert service.vaults.visible(OTHER) == []
        assert service.fleet.vaults["v"].keys == {}  # nothing stored half-way
        with pytest.raises(NotFound):
            await service.vaults.put(ACME, "x", "zone = a", tenant="other")

    with_service(tmp_path, body)


def app_doc(name: str, variables: list[Any] | None = None, cpus: float = 0.0) -> dict[str, Any]:
    service: dict[str, Any] = {
        "name": "main",
        "containers": [{"name": "main", "image": "busybox"}],
        "variables": variables or [],
    }
    if cpus:
        service["resources"] = {"cpus": cpus}
    return {"name": name, "version": "1", "services": [service]}


def test_an_app_naming_an_unknown_vault_secret_or_key_is_refused_at_push(tmp_path: Path) -> None:
    def ref(vault_name: str, secret: str, key: str) -> list[Any]:
        return [
            {"name": "K", "value-from-secret": {"vault": vault_name, "secret": secret, "key": key}}
        ]

    async def body(service: ControlService) -> None:
        await service.vaults.put(ACME, "v", "zone = a")
        await service.vaults.put(OTHER, "theirs", "zone = a")
        await service.vaults.put_secret(ACME, "v", "creds", {"api-key": VALUE})
        cases = [
            (ref("nope", "creds", "api-key"), "vault 'nope' does not exist"),
            (ref("theirs", "creds", "api-key"), "vault 'theirs' does not exist"),
            (ref("v", "missing", "api-key"), "no secret 'missing'"),
            (ref("v", "creds", "other-key"), "no key 'other-key'"),
        ]
        for variables, message in cases:
            with pytest.raises(Invalid, match=message):
                await service.apps.push(ACME, "app", "1", app_doc("app", variables))
        created, _ = await service.apps.push(
            ACME, "app", "1", app_doc("app", ref("v", "creds", "api-key"))
        )
        assert created

    with_service(tmp_path, body)


def test_a_deployment_over_the_tenants_site_quota_is_refused_naming_site_and_resource(
    tmp_path: Path,
) -> None:
    async def body(service: ControlService) -> None:
        service.fleet.tenants["acme"] = Tenant("acme", "system", 1.0, {"cpus": 1.0})
        add_site(service, "s1", {"zone": "a"}, ["acme"])
        await recompute(service)
        await service.apps.push(ACME, "small", "1", app_doc("small", cpus=0.5))
        await service.apps.push(ACME, "big", "1", app_doc("big", cpus=0.75))
        deployment = {"application": "small", "version": "1", "placement": {"all-sites": True}}
        await service.deployments.put(ACME, {"name": "small", **deployment})
        with pytest.raises(Invalid, match=r"site s1.*cpus.*acme") as error:
            await service.deployments.put(ACME, {**deployment, "name": "big", "application": "big"})
        assert "big" not in service.fleet.deployments
        assert error.value.status == 422

    with_service(tmp_path, body)


def test_sealing_a_sites_vaults_leaves_the_event_loop_free(tmp_path: Path) -> None:
    """Twenty full vaults (1 MiB each) sealed for one site: a heartbeat on the event loop keeps
    ticking meanwhile, because the cryptography runs in a worker thread."""

    async def body(service: ControlService) -> None:
        key = add_site(service, "s1", {"zone": "a"}, ["acme"])
        envelope = service.vaults.envelope
        secrets = {f"s{i}": {"k": "x" * (MAX_SECRET_BYTES - 64)} for i in range(15)}
        for n in range(20):
            name = f"v{n}"
            _, wrapped = envelope.new_data_key(name)
            blob = envelope.close_vault(wrapped, secrets, name)
            keys = {s: ["k"] for s in secrets}
            service.fleet.vaults[name] = Vault(
                name, "acme", "zone = a", "local", 1, wrapped, blob, keys
            )
        await recompute(service)
        gaps: list[float] = []

        async def heartbeat() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.002)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        raw = await service.sync.desired_body(service.fleet.sites["s1"])
        took = time.perf_counter() - started
        await asyncio.sleep(0.01)  # the heartbeat notes the gap it is in
        ticking.cancel()
        doc = json.loads(raw)
        assert len(doc["vaults"]) == 20
        assert unseal(doc["vaults"][0]["sealed"], key, site="s1") == secrets
        assert took > 0.05  # enough work to tell
        # on the loop, the one gap would be all of `took`; a loaded machine's scheduler alone
        # has made gaps of a quarter of it
        assert max(gaps) < took / 2, f"the loop stood still {max(gaps):.3f}s of {took:.3f}s"

    with_service(tmp_path, body)
