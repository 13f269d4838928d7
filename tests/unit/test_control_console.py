"""The web console's files as control serves them: content types, a strict CSP, no inline
script, nothing from another origin, and every file shipped in the package."""

from __future__ import annotations

import asyncio
import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from control.api.app import ControlAPI
from control.console import CSP, STATIC
from control.service.core import Metrics

ROOT = Path(__file__).resolve().parents[2]
STATIC_DIR = ROOT / "control" / "console" / "static"


class NoService:
    metrics = Metrics()


async def fetch(paths: list[str]) -> dict[str, tuple[int, dict[str, str], bytes]]:
    server = TestServer(ControlAPI(NoService()).app())  # type: ignore[arg-type]
    await server.start_server()
    answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
    try:
        async with ClientSession() as session:
            for path in paths:
                url = str(server.make_url(path))
                async with session.get(url, allow_redirects=False) as r:
                    answers[path] = (r.status, dict(r.headers), await r.read())
    finally:
        await server.close()
    return answers


def test_the_console_is_served_at_ui_with_its_content_types_and_a_strict_policy() -> None:
    answers = asyncio.run(fetch(["/ui", "/ui/", "/ui/console.js", "/ui/console.css"]))
    status, headers, _ = answers["/ui"]
    assert (status, headers["Location"]) == (308, "/ui/")
    types = {"/ui/": "text/html", "/ui/console.js": "text/javascript",
             "/ui/console.css": "text/css"}  # fmt: skip
    for path, content_type in types.items():
        status, headers, body = answers[path]
        assert status == 200, path
        assert headers["Content-Type"] == f"{content_type}; charset=utf-8"
        assert headers["Content-Security-Policy"] == CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body == (STATIC_DIR / (path.removeprefix("/ui/") or "index.html")).read_bytes()
    assert "unsafe" not in CSP and "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP


def test_a_file_the_console_does_not_have_is_a_404_naming_the_path() -> None:
    answers = asyncio.run(fetch(["/ui/nothing.js", "/ui/..%2Fapp.py", "/ui/static"]))
    for path, (status, _, body) in answers.items():
        assert status == 404, path
        assert b'"not-found"' in body and b"no such endpoint: GET /ui/" in body


def test_the_page_has_no_inline_script_or_style_and_fetches_nothing_from_elsewhere() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert scripts and all(body.strip() == "" for body in scripts)
    assert all('src="' in tag for tag in re.findall(r"<script\b[^>]*>", html))
    assert not re.search(r"\son[a-z]+\s*=|\sstyle\s*=|<style", html)
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), path.name
        assert "innerHTML" not in text and "eval(" not in text, path.name


@pytest.mark.repository
def test_every_console_file_is_in_the_package_data_and_served() -> None:
    package_data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]["package-data"]
    globs = package_data["control.console"]
    files = sorted(p.name for p in STATIC_DIR.iterdir())
    assert {"index.html", "console.js", "console.css"} <= set(files)
    assert [f for f in files if not any(fnmatch(f"static/{f}", g) for g in globs)] == []
    assert sorted(p.name for p in STATIC.iterdir()) == files
    answers = asyncio.run(fetch([f"/ui/{f}" for f in files]))
    assert {path: status for path, (status, _, _) in answers.items()} == {
        f"/ui/{f}": 200 for f in files
    }
