"""Git sources in control's service, in process: a real SQLite store and real local Git
repositories (file:// URLs). The sites and the enforcer are in tests/integration/test_control_git.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from control.fleet.access import Principal
from control.model import Conflict, Forbidden, Invalid, NotFound, Site, Unauthorized
from control.service import ControlService
from control.store.sqlite import SQLiteStore
from tests.support.gitremote import GitRemote
from tests.support.service import run_service

ADMIN = Principal("system", frozenset({"system", "acme", "other"}))
ACME = Principal("acme", frozenset({"acme"}))
HOUR = "1h"  # the loop polls once when a source is added; the tests poll themselves

APP = {
    "name": "web",
    "version": "1.0",
    "services": [{"name": "main", "containers": [{"name": "main", "image": "r.example/web:1"}]}],
}
DEPLOYMENT = {
    "name": "web-eu",
    "application": "web",
    "version": "latest",
    "placement": {"match-site-labels": "region = eu"},
}
VAULT = {"kind": "vault", "name": "creds", "distribute": "region = eu"}


async def _acme(service: ControlService, store: SQLiteStore) -> None:
    if "acme" not in service.fleet.tenants:
        await service.tenants.create(ADMIN, "acme", "system")


def run(tmp_path: Path, body: Callable[[ControlService], Awaitable[Any]]) -> Any:
    return run_service(tmp_path, body, prepare=_acme, timeout=30, git_dir=tmp_path / "git")


@pytest.fixture
def remote(tmp_path: Path) -> GitRemote:
    remote = GitRemote(tmp_path / "origin")
    remote.write("edge/apps/web.yaml", yaml.safe_dump(APP))
    remote.write("edge/deploy/web-eu.yaml", yaml.safe_dump(DEPLOYMENT))
    remote.write("edge/vaults/creds.yaml", yaml.safe_dump(VAULT))
    remote.write("README.md", "the specs are under edge/")
    return remote


async def add(service: ControlService, remote: GitRemote, **kwargs: Any) -> str:
    # file:// URLs are the system tenant's: it adds the source for tenant acme
    _, secret = await service.git.add(
        ADMIN,
        "shop",
        remote.url,
        "main",
        "edge",
        kwargs.pop("tenant", "acme"),
        kwargs.pop("interval", HOUR),
        **kwargs,
    )
    return secret


def test_a_commit_is_applied_as_the_sources_tenant_and_its_state_kept(
    tmp_path: Path, remote: GitRemote
) -> None:
    commit = remote.commit("first")

    async def body(service: ControlService) -> None:
        await add(service, remote)
        source = await service.git.sync("shop")
        assert (source.applied_commit, source.seen_commit, source.problem) == (commit, commit, "")
        app = service.fleet.apps[("web", "1.0")]
        assert app.tenant == "acme"
        assert service.fleet.deployments["web-eu"].record.tenant == "acme"
        assert service.fleet.deployments["web-eu"].rollout is not None  # rolling out
        assert service.fleet.vaults["creds"].tenant == "acme"
        assert service.fleet.vaults["creds"].keys == {}
        assert service.core.owners == {
            ("application", "web"): "shop",
            ("deployment", "web-eu"): "shop",
            ("vault", "creds"): "shop",
        }

    run(tmp_path, body)

    async def after_a_restart(service: ControlService) -> None:
        (source,) = service.git.visible(ACME)
        assert source.applied_commit == commit
        assert service.core.owners[("deployment", "web-eu")] == "shop"

    run(tmp_path, after_a_restart)


def test_an_invalid_commit_changes_nothing_and_names_every_file_and_path(
    tmp_path: Path, remote: GitRemote
) -> None:
    first = remote.commit("first")

    async def body(service: ControlService) -> None:
        await add(service, remote)
        await service.git.sync("shop")
        remote.write("edge/apps/web.yaml", yaml.safe_dump({**APP, "version": "2.0", "replicas": 3}))
        bad_placement = {"match-site-labels": "region = ("}
        remote.write(
            "edge/deploy/web-eu.yaml", yaml.safe_dump({**DEPLOYMENT, "placement": bad_placement})
        )
        broken = remote.commit("broken")
        source = await service.git.sync("shop")
        assert (source.applied_commit, source.seen_commit) == (first, broken)
        assert source.problem.startswith("the commit does not validate: apps/web.yaml: ")
        assert source.errors == [
            {"file": "apps/web.yaml", "path": "replicas", "message": "unknown field"},
            {
                "file": "deploy/web-eu.yaml",
                "path": "placement.match-site-labels",
                "message": 'expected a value after "=", found "(" at column 10 of \'region = (\'',
            },
        ]
        assert set(service.fleet.apps) == {("web", "1.0")}
        assert service.fleet.deployments["web-eu"].spec.match_site_labels == "region = eu"
        remote.write("edge/apps/web.yaml", yaml.safe_dump(APP))
        remote.write(
            "edge/deploy/web-eu.yaml", yaml.safe_dump({**DEPLOYMENT, "application": "wbe"})
        )
        remote.commit("a deployment of an application nobody has")
        source = await service.git.sync("shop")
        assert source.errors == [
            {
                "file": "deploy/web-eu.yaml",
                "path": "application",
                "message": "application 'wbe' is neither in this commit nor at control",
            }
        ]

    run(tmp_path, body)


def test_a_new_version_is_stored_and_removed_files_remove_what_they_made(
    tmp_path: Path, remote: GitRemote
) -> None:
    remote.commit("first")

    async def body(service: ControlService) -> None:
        await add(service, remote)
        await service.git.sync("shop")
        remote.write("edge/apps/web.yaml", yaml.safe_dump({**APP, "version": "1.1"}))
        remote.commit("new version")
        await service.git.sync("shop")
        assert set(service.fleet.apps) == {("web", "1.0"), ("web", "1.1")}
        rollout = service.fleet.deployments["web-eu"].rollout
        assert rollout is not None and rollout.target == "1.1"
        remote.remove("edge/deploy/web-eu.yaml")
        remote.remove("edge/apps/web.yaml")
        remote.remove("edge/vaults/creds.yaml")
        remote.commit("all gone")
        source = await service.git.sync("shop")
        assert source.problem == ""
        assert service.fleet.deployments == {} and service.fleet.apps == {}
        assert service.fleet.vaults == {} and service.core.owners == {}

    run(tmp_path, body)


def test_with_pruning_off_a_removed_file_leaves_its_deployment_editable_by_hand(
    tmp_path: Path, remote: GitRemote
) -> None:
    remote.commit("first")

    async def body(service: ControlService) -> None:
        await add(service, remote, prune=False)
        await service.git.sync("shop")
        remote.remove("edge/deploy/web-eu.yaml")
        remote.commit("deployment gone from git")
        await service.git.sync("shop")
        assert "web-eu" in service.fleet.deployments
        await service.deployments.delete(ACME, "web-eu")  # no longer owned

    run(tmp_path, body)


def test_hand_edits_of_what_a_source_owns_are_refused_naming_the_source(
    tmp_path: Path, remote: GitRemote
) -> None:
    remote.commit("first")

    async def body(service: ControlService) -> None:
        await add(service, remote)
        await service.git.sync("shop")
        pushes = [
            service.apps.push(ACME, "web", "9.0", {**APP, "version": "9.0"}),
            service.deployments.put(ACME, {**DEPLOYMENT, "version": "1.0"}),
            service.deployments.delete(ACME, "web-eu"),
            service.vaults.put(ACME, "creds", "all"),
            service.vaults.delete(ACME, "creds"),
        ]
        for attempt in pushes:
            with pytest.raises(Conflict) as info:
                await attempt
            assert "is owned by Git source shop" in str(info.value)
        await service.vaults.put_secret(ACME, "creds", "db", {"password": "pw"})  # values: by hand
        assert (tmp_path / "git" / "shop" / "HEAD").exists()
        await service.git.remove(ACME, "shop")
        await service.deployments.delete(ACME, "web-eu")  # released with the source
        assert not (tmp_path / "git" / "shop").exists()  # its bare repository too

    run(tmp_path, body)


def test_the_hook_polls_with_the_right_secret_and_refuses_others(
    tmp_path: Path, remote: GitRemote
) -> None:
    remote.commit("first")

    async def body(service: ControlService) -> None:
        secret = await add(service, remote)
        with pytest.raises(NotFound):
            await service.git.hook("nope", secret)
        with pytest.raises(Unauthorized):
            await service.git.hook("shop", "ewh_wrong")
        with pytest.raises(Unauthorized):
            await service.git.hook("shop", None)
        await service.git.hook("shop", secret)

    run(tmp_path, body)


def test_a_fetch_that_fails_is_kept_as_the_problem_and_changes_nothing(tmp_path: Path) -> None:
    async def body(service: ControlService) -> None:
        gone = GitRemote(tmp_path / "gone")
        gone.commit()
        await service.git.add(ADMIN, "shop", gone.url, "nope", "", "acme", HOUR)
        source = await service.git.sync("shop")
        assert source.problem == f"branch 'nope' not found in {gone.url}"
        assert source.applied_commit == ""

    run(tmp_path, body)


def test_credentials_are_kept_encrypted_and_never_shown(tmp_path: Path) -> None:
    async def body(service: ControlService) -> None:
        source, _ = await service.git.add(
            ACME,
            "shop",
            "https://user:pw@git.example/r.git",
            "main",
            "",
            None,
            HOUR,
            token="tok-secret-123",
        )
        assert source.auth == "token" and b"tok-secret-123" not in source.credentials
        assert "tok-secret-123" not in str(source.to_json())
        assert source.to_json()["url"] == "https://git.example/r.git"
        assert service.git._credentials(source).token == "tok-secret-123"

    run(tmp_path, body)
    assert b"tok-secret-123" not in (tmp_path / "control.db").read_bytes()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "/just/a/path"}, "url: '/just/a/path' is not a Git URL"),
        ({"branch": "../main"}, "branch: '../main' is not a branch name"),
        ({"path": "../up"}, "path: '../up' is not a path inside the repository"),
        ({"interval": "soon"}, "interval: 'soon' is not a duration (30s, 5m)"),
        ({"token": "t", "url": "ssh://git@h/r.git"}, "token: a token is for an https:// URL"),
        ({"tenant": "other"}, "tenant 'other' does not exist"),
        ({"url": "file:///var/lib/edgeward"}, "file:// URLs (repositories on control's host) are"),
    ],
)
def test_bad_sources_are_refused_with_one_clear_message(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    async def body(service: ControlService) -> None:
        given = {
            "url": "https://git.example/r.git",
            "branch": "main",
            "path": "",
            "tenant": None,
            "interval": "30s",
            **changes,
        }
        token = given.pop("token", None)
        with pytest.raises((Invalid, NotFound, Forbidden)) as info:
            await service.git.add(ACME, "shop", **given, token=token)
        assert str(info.value).startswith(message)
        assert service.git.sources == {}

    run(tmp_path, body)


def test_a_deployment_overlapping_one_made_by_hand_is_refused_like_deploy_refuses_it(
    tmp_path: Path, remote: GitRemote
) -> None:
    remote.commit("first")

    async def body(service: ControlService) -> None:
        await service.apps.push(ACME, "web", "1.0", APP)
        await service.deployments.put(ACME, {**DEPLOYMENT, "name": "by-hand"})
        service.fleet.sites["s1"] = Site(
            "s1", {"region": "eu"}, 1.0, tenants=["acme"], enrolled=1.0
        )
        await add(service, remote)
        source = await service.git.sync("shop")
        assert source.applied_commit == ""
        assert source.errors == [
            {
                "file": "deploy/web-eu.yaml",
                "path": "placement",
                "message": "deployments web-eu and by-hand would both place application web on "
                "site s1",
            }
        ]
        assert set(service.fleet.deployments) == {"by-hand"}

    run(tmp_path, body)


def test_only_the_process_that_leads_polls_and_a_hook_elsewhere_does_not_fetch(
    tmp_path: Path, remote: GitRemote
) -> None:
    commit = remote.commit("first")

    async def body(service: ControlService) -> None:
        leading = False
        service.core.leads = lambda: leading  # type: ignore[method-assign]
        secret = await add(service, remote, interval="1s")
        await asyncio.sleep(1.5)
        assert service.git.sources["shop"].applied_commit == ""
        await service.git.hook("shop", secret)  # recorded for the leader to hear of
        await asyncio.sleep(0.3)
        assert service.fleet.deployments == {}
        leading = True
        service.git.wake()  # as ControlService does when this process begins to lead
        for _ in range(50):
            if service.git.sources["shop"].applied_commit == commit:
                break
            await asyncio.sleep(0.1)
        assert service.git.sources["shop"].applied_commit == commit
        assert "web-eu" in service.fleet.deployments

    run(tmp_path, body)


def test_like_app_push_only_the_newest_ten_versions_are_kept(
    tmp_path: Path, remote: GitRemote
) -> None:
    remote.commit("version 1.0")

    async def body(service: ControlService) -> None:
        await add(service, remote)
        await service.git.sync("shop")
        for minor in range(1, 11):
            remote.write("edge/apps/web.yaml", yaml.safe_dump({**APP, "version": f"1.{minor}"}))
            remote.commit(f"version 1.{minor}")
            source = await service.git.sync("shop")
            assert source.problem == ""
        versions = sorted(v for n, v in service.fleet.apps if n == "web")
        assert len(versions) == 10 and "1.0" not in versions and "1.10" in versions

    run(tmp_path, body)
