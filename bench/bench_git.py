"""Reading a Git source, side by side: control's way (a shallow fetch into a bare repository,
``ls-tree`` and one ``cat-file --batch``, nothing checked out) against the obvious one (a shallow
``git clone`` with a checkout, then walking the tree), for repositories of growing size; and
what reading and planning the spec files costs against the fetch.

    .venv/bin/python -m bench.bench_git [--files 1000,10000,50000] [--specs 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from control.gitops.plan import Existing, plan, read_commit
from control.gitops.repo import Repository
from tests.support.gitremote import GitRemote


def spec_files(remote: GitRemote, count: int) -> None:
    """`count` / 2 applications and as many deployments of them under edge/."""
    for i in range(count // 2):
        app = {
            "name": f"app-{i}",
            "version": "1",
            "services": [
                {
                    "name": "main",
                    "containers": [{"name": "main", "image": f"registry.example:5000/app-{i}:1"}],
                }
            ],
        }
        deployment = {
            "name": f"app-{i}",
            "application": f"app-{i}",
            "version": "latest",
            "placement": {"match-site-labels": f"shard = s{i % 16}"},
        }
        remote.write(f"edge/apps/app-{i}.yaml", yaml.safe_dump(app))
        remote.write(f"edge/deploy/app-{i}.yaml", yaml.safe_dump(deployment))


def ours(root: Path, url: str) -> tuple[float, float, dict[str, bytes]]:
    repo = Repository(root / "bare", url, timeout=600)
    started = time.perf_counter()
    commit = asyncio.run(repo.fetch("main"))
    fetched = time.perf_counter()
    tree = asyncio.run(repo.tree(commit, "edge"))
    return fetched - started, time.perf_counter() - fetched, dict(tree.files)


def clone(root: Path, url: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    subprocess.run(
        ["git", "clone", "--quiet", "--depth=1", "--branch", "main", url, str(root / "work")],
        check=True,
        env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull},
    )
    cloned = time.perf_counter()
    read = sum(len(p.read_bytes()) for p in (root / "work" / "edge").rglob("*.yaml") if p.is_file())
    return cloned - started, time.perf_counter() - cloned, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", default="1000,10000,50000")
    parser.add_argument("--specs", type=int, default=500)
    args = parser.parse_args()
    print(
        f"{'files':>7} {'specs':>6} | {'fetch s':>8} {'read s':>7} {'plan s':>7} | "
        f"{'clone s':>8} {'walk s':>7} | {'ours/clone':>10}"
    )
    for count in (int(n) for n in args.files.split(",")):
        root = Path(tempfile.mkdtemp(prefix="bench-git-"))
        try:
            remote = GitRemote(root / "origin")
            remote.many("data", count)
            spec_files(remote, args.specs)
            remote.commit("bench")
            fetch_s, read_s, files = ours(root / "ours", remote.url)
            started = time.perf_counter()
            documents = read_commit(files, {}, "acme")
            plan("bench", "acme", frozenset({"acme"}), documents, Existing(), frozenset())
            plan_s = time.perf_counter() - started
            clone_s, walk_s, _ = clone(root / "clone", remote.url)
            ratio = (fetch_s + read_s) / (clone_s + walk_s)
            print(
                f"{count + args.specs:>7} {len(files):>6} | {fetch_s:>8.2f} {read_s:>7.2f} "
                f"{plan_s:>7.2f} | {clone_s:>8.2f} {walk_s:>7.2f} | {ratio:>10.2f}"
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
