"""Control's web console: static files (HTML, CSS, JavaScript; no build step, nothing fetched
from elsewhere) served at ``/ui/`` on control's HTTPS port. The page talks to control's API
with the operator's token, so it can do nothing the token cannot; it is not part of the API
(not in the route table, nor in the OpenAPI document).
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

PREFIX = "/ui"
STATIC = resources.files(__name__).joinpath("static")
TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}
# The page's own files only: no inline script or style, no other origin, not framed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def files() -> dict[str, tuple[bytes, str]]:
    """The console's files by name, with their content types (read once, when control starts)."""
    found: dict[str, tuple[bytes, str]] = {}
    for entry in STATIC.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in TYPES:
            found[entry.name] = (entry.read_bytes(), TYPES[suffix])
    if "index.html" not in found:
        raise RuntimeError(f"the console's files are missing from {STATIC}")
    return found


def add_routes(app: web.Application) -> None:
    """``GET /ui`` (a redirect), ``GET /ui/`` (the page) and ``GET /ui/{file}``."""
    content = files()

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(f"{PREFIX}/")

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("file") or "index.html"
        if name not in content:
            raise web.HTTPNotFound()
        body, content_type = content[name]
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)

    app.router.add_get(PREFIX, redirect)
    app.router.add_get(f"{PREFIX}/", serve)
    app.router.add_get(PREFIX + "/{file}", serve)
