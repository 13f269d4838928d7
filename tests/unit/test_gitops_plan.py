"""A Git source's commit read and planned (pure): every error with its file and path, or the
changes against what control holds and what the source owns."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from control.gitops.documents import MAX_FILE_BYTES, Kind
from control.gitops.plan import Action, Existing, PlanInvalid, plan, read_commit

TENANT = "acme"
VISIBLE = frozenset({"acme"})

APP = """\
name: web
version: "1.0"
services:
  - name: main
    containers:
      - name: main
        image: registry.example:5000/web:1.0
"""
DEPLOYMENT = """\
name: web-eu
application: web
version: "1.0"
placement: {match-site-labels: "region = eu"}
"""
VAULT = "kind: vault\nname: creds\ndistribute: 'region = eu'\n"


def errors_of(
    commit: dict[str, bytes],
    existing: Existing | None = None,
    problems: dict[str, str] | None = None,
) -> list[str]:
    with pytest.raises(PlanInvalid) as info:
        documents = read_commit(commit, problems or {}, TENANT)
        plan("src", TENANT, VISIBLE, documents, existing or Existing(), frozenset())
    return [str(e) for e in info.value.errors]


def planned(
    commit: dict[str, bytes],
    existing: Existing | None = None,
    owned: frozenset[tuple[Kind, str]] = frozenset(),
    prune: bool = True,
) -> list[str]:
    documents = read_commit(commit, {}, TENANT)
    result = plan("src", TENANT, VISIBLE, documents, existing or Existing(), owned, prune)
    return [str(c) for c in result.changes]


def test_a_first_commit_creates_its_vault_application_and_deployment_in_that_order() -> None:
    commit = {"apps/web.yaml": APP.encode(), "deploy/web-eu.yaml": DEPLOYMENT.encode(),
              "vaults/creds.yaml": VAULT.encode(), "README.md": b"# not a spec"}  # fmt: skip
    assert planned(commit) == [
        "create vault creds",
        "create application web version 1.0",
        "create deployment web-eu",
    ]


def test_kinds_are_told_apart_by_shape_and_by_kind() -> None:
    as_kind = "kind: deployment\n" + DEPLOYMENT
    documents = read_commit(
        {"a.yaml": APP.encode(), "d.yml": as_kind.encode(), "v.json": b'{"name": "v", '
         b'"distribute": "x = y"}'}, {}, TENANT)  # fmt: skip
    assert sorted((d.kind.value, d.name) for d in documents) == [
        ("application", "web"),
        ("deployment", "web-eu"),
        ("vault", "v"),
    ]


def test_several_documents_in_one_file_are_read() -> None:
    commit = {"all.yaml": (APP + "---\n" + DEPLOYMENT).encode()}
    assert planned(commit) == ["create application web version 1.0", "create deployment web-eu"]


def test_an_unknown_kind_is_named_with_its_file_and_path() -> None:
    assert errors_of({"x.yaml": b"kind: pod\nname: x\n"}) == [
        "x.yaml: kind: 'pod' is not one of application, deployment, vault"
    ]


def test_a_file_of_no_known_shape_is_refused_with_the_reason() -> None:
    (error,) = errors_of({"x.yaml": b"name: x\n"})
    assert error.startswith("x.yaml: not an application (services:), a deployment")


def test_every_invalid_file_is_reported_with_file_and_path() -> None:
    broken_app = APP.replace('"1.0"\n', '"1.0"\nreplicas: 2\n')
    broken_deployment = DEPLOYMENT.replace("region = eu", "region = (")
    errors = errors_of({"apps/web.yaml": broken_app.encode(),
                        "deploy/web.yaml": broken_deployment.encode()})  # fmt: skip
    assert "apps/web.yaml: replicas: unknown field" in errors[0]
    assert errors[1].startswith("deploy/web.yaml: placement.match-site-labels: ")
    assert len(errors) == 2


def test_broken_yaml_names_the_file_and_line() -> None:
    assert errors_of({"apps/web.yaml": b"name: web\nservices: [\n"}) == [
        "apps/web.yaml: line 3: not valid YAML: expected the node content, but found '<stream end>'"
    ]


def test_a_ten_megabyte_file_is_refused_with_its_size() -> None:
    big = b"# " + b"x" * (10 * 1024 * 1024)
    assert errors_of({"big.yaml": big}) == [
        f"big.yaml: the file is {len(big)} bytes; at most {MAX_FILE_BYTES}"
    ]


def test_files_the_reader_could_not_read_are_errors() -> None:
    problems = {"evil.yaml": "a symbolic link pointing outside the source's path"}
    assert errors_of({}, problems=problems) == [
        "evil.yaml: a symbolic link pointing outside the source's path"
    ]


def test_two_files_defining_the_same_application_are_an_error() -> None:
    errors = errors_of({"a.yaml": APP.encode(), "b.yaml": APP.encode()})
    assert errors == ["b.yaml: name: application web is defined in a.yaml too"]


def test_a_deployment_naming_an_application_the_commit_lacks_is_an_error() -> None:
    errors = errors_of({"d.yaml": DEPLOYMENT.encode()})
    assert errors == [
        "d.yaml: application: application 'web' is neither in this commit nor at control"
    ]


def test_a_deployment_may_name_an_application_pushed_to_control() -> None:
    existing = Existing(app_versions={("web", "1.0"): "d"}, app_tenants={"web": TENANT})
    assert planned({"d.yaml": DEPLOYMENT.encode()}, existing) == ["create deployment web-eu"]


def test_a_deployment_naming_a_missing_version_is_an_error() -> None:
    commit = {"a.yaml": APP.encode(), "d.yaml": DEPLOYMENT.replace('"1.0"', '"2.0"').encode()}
    assert errors_of(commit) == ["d.yaml: version: application web has no version '2.0'"]


def test_an_application_naming_a_vault_nobody_has_is_an_error() -> None:
    app = yaml.safe_load(APP)
    app["services"][0]["volumes"] = [{"name": "c", "secret": {"vault": "nope", "secret": "s"}}]
    (error,) = errors_of({"a.yaml": yaml.safe_dump(app).encode()})
    assert error == (
        "a.yaml: services[0].volumes[0].secret.vault: vault 'nope' is neither in this commit "
        "nor at control"
    )


def test_a_vault_file_with_values_is_refused() -> None:
    errors = errors_of({"v.yaml": (VAULT + "secrets: {a: {b: c}}\n").encode()})
    assert errors[0].startswith("v.yaml: secrets: a vault file holds no secret values")


def existing_with_app(digest: str) -> Existing:
    return Existing(
        app_versions={("web", "1.0"): digest},
        app_tenants={"web": TENANT},
        deployments={"web-eu": (TENANT, yaml.safe_load(DEPLOYMENT))},
        owners={(Kind.APPLICATION, "web"): "src", (Kind.DEPLOYMENT, "web-eu"): "src"},
    )


def digest_of_app() -> str:
    (document,) = read_commit({"a.yaml": APP.encode()}, {}, TENANT)
    return document.digest


def test_the_same_commit_again_changes_nothing() -> None:
    commit = {"a.yaml": APP.encode(), "d.yaml": DEPLOYMENT.encode()}
    documents = read_commit(commit, {}, TENANT)
    deployment = next(d for d in documents if d.kind is Kind.DEPLOYMENT)
    existing = Existing(
        app_versions={("web", "1.0"): digest_of_app()},
        app_tenants={"web": TENANT},
        deployments={"web-eu": (TENANT, deployment.body)},
    )
    assert plan("src", TENANT, VISIBLE, documents, existing, frozenset()).changes == ()


def test_a_new_version_is_created_and_the_deployment_updated() -> None:
    new_app = APP.replace('"1.0"', '"1.1"')
    commit = {"a.yaml": new_app.encode(), "d.yaml": DEPLOYMENT.replace('"1.0"', '"1.1"').encode()}
    assert planned(commit, existing_with_app(digest_of_app())) == [
        "create application web version 1.1",
        "update deployment web-eu",
    ]


def test_a_changed_spec_under_the_same_version_is_an_error() -> None:
    changed = APP.replace("web:1.0", "web:1.0-fixed")
    errors = errors_of({"a.yaml": changed.encode()}, existing_with_app(digest_of_app()))
    assert errors == [
        "a.yaml: version: application web version 1.0 exists with another spec; versions are "
        "immutable, change the version"
    ]


def test_removed_files_remove_what_they_made_deployments_first() -> None:
    owned = frozenset({(Kind.APPLICATION, "web"), (Kind.DEPLOYMENT, "web-eu")})
    assert planned({}, existing_with_app("d"), owned) == [
        "remove deployment web-eu",
        "remove application web",
    ]


def test_with_pruning_off_removed_files_leave_things_as_they_are() -> None:
    owned = frozenset({(Kind.APPLICATION, "web"), (Kind.DEPLOYMENT, "web-eu")})
    documents = read_commit({}, {}, TENANT)
    result = plan("src", TENANT, VISIBLE, documents, existing_with_app("d"), owned, prune=False)
    assert result.changes == () and result.owned == frozenset()


def test_removing_an_application_still_deployed_by_hand_is_an_error() -> None:
    existing = existing_with_app("d")
    owners = {(Kind.APPLICATION, "web"): "src"}  # the deployment was made by hand
    existing = Existing(existing.app_versions, existing.app_tenants, existing.deployments, {},
                        owners)  # fmt: skip
    with pytest.raises(PlanInvalid) as info:
        plan("src", TENANT, VISIBLE, [], existing, frozenset({(Kind.APPLICATION, "web")}))
    assert [str(e) for e in info.value.errors] == [
        "application web leaves the commit but deployment web-eu uses it"
    ]


def test_what_another_source_owns_is_an_error() -> None:
    existing = Existing(app_tenants={"web": TENANT}, owners={(Kind.APPLICATION, "web"): "other"})
    assert errors_of({"a.yaml": APP.encode()}, existing) == [
        "a.yaml: name: application web is owned by Git source other"
    ]


def test_what_another_tenant_holds_is_an_error() -> None:
    existing = Existing(app_versions={("web", "0.9"): "d"}, app_tenants={"web": "globex"})
    assert errors_of({"a.yaml": APP.encode()}, existing) == [
        "a.yaml: name: application web belongs to another tenant"
    ]


def test_a_vault_made_by_hand_is_adopted_and_its_distribution_changed() -> None:
    existing = Existing(vaults={"creds": (TENANT, {"name": "creds", "distribute": "all",
                                                   "unseal": "local"})})  # fmt: skip
    documents = read_commit({"v.yaml": VAULT.encode()}, {}, TENANT)
    result = plan("src", TENANT, VISIBLE, documents, existing, frozenset())
    assert [(c.action, c.name) for c in result.changes] == [(Action.UPDATE, "creds")]
    assert result.owned == {(Kind.VAULT, "creds")}


def test_a_compose_file_in_git_is_converted_like_app_push() -> None:
    compose: dict[str, Any] = {
        "name": "shop",
        "services": {"web": {"image": "registry.example:5000/shop:1"}},
    }
    (document,) = read_commit({"shop/compose.yaml": yaml.safe_dump(compose).encode()}, {}, TENANT)
    assert (document.kind, document.name) == (Kind.APPLICATION, "shop")
