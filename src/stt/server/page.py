"""The browser page: `GET /` and its static files (`/static/...`), shipped inside the package.

Plain HTML, CSS and JavaScript modules in `stt/server/static/` (package data, so an installed
wheel serves them too): no build step, no framework, nothing fetched from anywhere but this
server. The page itself holds no secret, so it is served without an API key (it asks for the
key and sends it with every request it makes).
"""

from __future__ import annotations

import os
from importlib.resources import files
from typing import Final

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

PAGE_PATH: Final = "/"
STATIC_PREFIX: Final = "/static"
STATIC_PACKAGE: Final = ("stt.server", "static")
"""Where the files live: the `static` folder of this package."""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)
"""The browser refuses anything from another origin (no CDN, no font, no tracker) and inline
script: what the page runs is exactly the files below."""

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change with the installed package; a restart after an upgrade must not serve
    # yesterday's JavaScript against today's server.
    "Cache-Control": "no-cache",
}


def is_public(path: str) -> bool:
    """Whether `path` is the page or one of its files (served without an API key)."""
    return path == PAGE_PATH or path.startswith(STATIC_PREFIX + "/")


def page_html() -> str:
    """The page's HTML, read from the package (each request: it is small)."""
    return files(STATIC_PACKAGE[0]).joinpath(STATIC_PACKAGE[1], "index.html").read_text("utf-8")


class _Static(StaticFiles):
    """StaticFiles with the page's security headers on every file."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def add_page(app: FastAPI) -> None:
    """Serve the page at `/` and its files under `/static/`."""

    @app.get(PAGE_PATH, response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html(), headers=SECURITY_HEADERS)

    app.mount(STATIC_PREFIX, _Static(packages=[STATIC_PACKAGE]), name="static")
