"""The API documentation pages: `/docs` (Swagger UI), its `/docs/oauth2-redirect`
and `/redoc` (ReDoc), with their JavaScript, CSS and favicon served by Quarry itself.

FastAPI's own pages load these assets from public CDNs, so on an offline or
air-gapped deployment they stay blank. The assets here come from the pinned
`fastapi-offline` package (Swagger UI and ReDoc builds; nothing is vendored into
this repo), mounted under `/docs/assets`; the pages are FastAPI's own HTML pointed
at them, with ReDoc told not to fetch Google fonts. Each page also carries a
Content-Security-Policy that keeps the browser on this origin, because a bundle can
still reach out by itself (ReDoc's menu footer loads its logo from Redocly's CDN).
The pages keep what the app configures for Swagger UI (OAuth2 redirect,
`init_oauth`, parameters), so "Authorize" works with the security schemes that
`app.http.openapi` declares. As with FastAPI's defaults, the routes are plain Starlette
routes outside the OpenAPI document, and none of this exists when
`QUARRY_DOCS_ENABLED` is off.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from app.settings import Settings

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
#: What `fastapi-offline` ships: swagger-ui-bundle.js, swagger-ui.css,
#: redoc.standalone.js and favicon.png (the layout its own factory relies on).
ASSETS_DIRECTORY = Path(str(files("fastapi_offline") / "static"))

#: Scripts: same-origin files and the page's own inline script (by hash). Both UIs
#: set inline styles and use data: images; ReDoc searches in a blob: worker.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'{script_hashes}; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _root_path(request: Request) -> str:
    """The prefix a proxy mounts the app under, so the pages' URLs stay right there."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    """`page` with the CSP that allows exactly its inline scripts."""
    script_hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(bytes(page.body).decode())
    )
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.format(
        script_hashes=script_hashes
    )
    return page


def install_docs(app: FastAPI, settings: Settings) -> None:
    """Mount the assets and add the docs pages to `app` (nothing when docs are off).

    `app` must be created with `docs_url=None, redoc_url=None`, so that FastAPI
    does not add its CDN-loading pages at the same paths."""
    if not settings.docs_enabled or app.openapi_url is None:
        return
    openapi_url = app.openapi_url
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url  # "/docs/oauth2-redirect"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIRECTORY), name="docs_assets")

    async def swagger_ui_html(request: Request) -> HTMLResponse:
        root = _root_path(request)
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + oauth2_redirect_url if oauth2_redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        return _with_policy(page)

    async def swagger_ui_oauth2_redirect(request: Request) -> HTMLResponse:
        return _with_policy(get_swagger_ui_oauth2_redirect_html())

    async def redoc_html(request: Request) -> HTMLResponse:
        root = _root_path(request)
        page = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        return _with_policy(page)

    app.add_route(DOCS_URL, swagger_ui_html, include_in_schema=False)
    if oauth2_redirect_url:
        app.add_route(oauth2_redirect_url, swagger_ui_oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc_html, include_in_schema=False)
