"""Control follows a local bare Git repository (file://, no network) and a real enforcer, on its
own dockerd, runs what the branch holds: commits become rollouts, a broken commit changes
nothing and says where it is broken, a removed file removes the application, and a hand push of
what Git owns is refused."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from control.fleet.access import Principal
from control.model import Conflict
from control.service import ControlService
from control.store.pg import PgStore
from control.vaults.envelope import Envelope
from tests.integration.test_site_sync import enrolled, running_apps
from tests.support.apps import app, sleeper
from tests.support.control import ControlProcess, api_error
from tests.support.engines import DockerEngine
from tests.support.gitremote import GitRemote
from tests.support.postgres import PostgresCluster

DEPLOYMENT = {
    "name": "shop-acme",
    "application": "shop",
    "version": "latest",
    "placement": {"match-site-labels": "customer = acme"},
}


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_site_runs_what_the_branch_holds_and_nothing_else(
    control: ControlProcess,
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_image: str,
    tmp_path: Path,
) -> None:
    remote = GitRemote(tmp_path)
    remote.write("edge/apps/shop.yaml", yaml.safe_dump(app("shop", sleeper("s", test_image))))
    remote.write("edge/deploy/shop.yaml", yaml.safe_dump(DEPLOYMENT))
    remote.write("README.md", "specs live under edge/")
    first = remote.commit("shop 1")
    connection = (
        "--url",
        control.url,
        "--token",
        control.admin_token,
        "--ca",
        str(control.state_dir / "ca.pem"),
    )

    def git(*args: str) -> Any:
        done = control.cli("git", *args, *connection)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def status() -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(git("status", "shop", "-o", "json"))
        return answer

    site = enrolled(control, engine, "store-a", {"customer": "acme"})
    try:
        added = git(
            "add", "shop", remote.url, "--branch", "main", "--path", "edge", "--interval", "2s"
        )
        assert "/v1/git-sources/shop/hook" in added
        hook_secret = added.split("with the secret ")[1].split()[0]

        # a commit of an application and its deployment: the site runs it
        wait(lambda: running_apps(docker_client) == {"shop"}, 30, "shop at the site")
        assert status()["applied-commit"] == first

        # a new version: rolled out (the push hook asks for it at once)
        two = app("shop", sleeper("s", test_image), sleeper("t", test_image), version="2")
        remote.write("edge/apps/shop.yaml", yaml.safe_dump(two))
        second = remote.commit("shop 2")
        wrong = api_error(lambda: control.client("ewh_wrong").post("/v1/git-sources/shop/hook", {}))
        assert wrong.status == 401
        unknown = api_error(lambda: control.client(hook_secret).post("/v1/git-sources/x/hook", {}))
        assert unknown.status == 404
        control.client(hook_secret).post("/v1/git-sources/shop/hook", {})
        site.wait_running("shop.t.0", timeout=30)
        assert status()["applied-commit"] == second

        # a broken file: nothing changes, and git status names the file and the path
        running = {c.id for c in docker_client.containers.list()}
        remote.write("edge/apps/shop.yaml", yaml.safe_dump({**two, "version": "3", "replicas": 2}))
        broken = remote.commit("broken")
        wait(lambda: status()["seen-commit"] == broken, 8, "the broken commit seen by polling")
        assert status()["applied-commit"] == second
        text = git("status", "shop")
        assert "apps/shop.yaml: replicas: unknown field" in text
        time.sleep(1)
        assert {c.id for c in docker_client.containers.list()} == running
        assert [
            v["version"] for v in control.client().get("/v1/applications/shop")["versions"]
        ] == ["1", "2"]

        # what Git owns is not pushed by hand
        refused = api_error(
            lambda: control.client().put(
                "/v1/applications/shop/versions/9", {**two, "version": "9"}
            )
        )
        assert refused.status == 409 and "owned by Git source shop" in str(refused)

        # the files removed: the application leaves the site
        remote.remove("edge/apps/shop.yaml")
        remote.remove("edge/deploy/shop.yaml")
        remote.commit("shop retired")
        wait(lambda: running_apps(docker_client) == set(), 30, "shop removed from the site")
        assert status()["problem"] == ""
        (listed,) = json.loads(git("ls", "-o", "json"))
        assert (listed["name"], listed["interval"], listed["prune"]) == ("shop", 2.0, True)
        assert "git source shop removed" in git("rm", "shop")
        assert json.loads(git("ls", "-o", "json")) == []
    finally:
        site.cli("rm", "shop")
        site.stop()
        site.remove_firewall()
        shutil.rmtree(site.root, ignore_errors=True)


ADMIN = Principal("system", frozenset({"system"}))


def test_commits_apply_prune_and_own_on_postgresql_and_survive_a_restart(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres_cluster.new_database("git")
    remote = GitRemote(tmp_path / "origin")
    spec = app("shop", sleeper("s", "r.example/shop:1"))
    remote.write("apps/shop.yaml", yaml.safe_dump(spec))
    remote.write("deploy/shop.yaml", yaml.safe_dump(DEPLOYMENT))
    remote.write("vault.yaml", "kind: vault\nname: creds\ndistribute: customer = acme\n")
    first = remote.commit("first")

    async def with_service(body: Callable[[ControlService], Any]) -> None:
        store = PgStore(url)
        await store.open()
        service = ControlService(
            store,
            None,  # type: ignore[arg-type]  # no enrollment here
            "https://control",
            envelope=Envelope(b"k" * 32),
            master_key_path=tmp_path / "master.key",
            git_dir=tmp_path / "git",
        )
        try:
            await service.start()
            await body(service)
        finally:
            await service.stop()
            await store.close()

    async def first_run(service: ControlService) -> None:
        await service.git.add(ADMIN, "shop", remote.url, "main", "", None, "1h")
        source = await service.git.sync("shop")
        assert source.applied_commit == first, source.problem
        assert set(service.fleet.apps) == {("shop", "1")} and "creds" in service.fleet.vaults
        remote.write("apps/shop.yaml", yaml.safe_dump({**spec, "version": "2", "replicas": 1}))
        broken = remote.commit("broken")
        source = await service.git.sync("shop")
        assert (source.applied_commit, source.seen_commit) == (first, broken)
        assert source.errors == [
            {"file": "apps/shop.yaml", "path": "replicas", "message": "unknown field"}
        ]

    async def after_restart(service: ControlService) -> None:
        (source,) = service.git.visible(ADMIN)
        assert source.applied_commit == first and source.errors[0]["path"] == "replicas"
        with pytest.raises(Conflict):
            await service.deployments.delete(ADMIN, "shop-acme")
        remote.remove("apps/shop.yaml")
        remote.remove("deploy/shop.yaml")
        remote.commit("retired")
        source = await service.git.sync("shop")
        assert source.problem == ""
        assert service.fleet.apps == {} and service.fleet.deployments == {}
        assert service.core.owners == {("vault", "creds"): "shop"}
        await service.git.remove(ADMIN, "shop")
        await service.vaults.delete(ADMIN, "creds")

    asyncio.run(asyncio.wait_for(with_service(first_run), 60))
    asyncio.run(asyncio.wait_for(with_service(after_restart), 60))
