"""The docs pages work with no network but Quarry's (app/http/docs.py): their HTML names
only same-origin assets, which Quarry serves; in headless Chromium, where no host
but the loopback server resolves, Swagger UI and ReDoc render every operation, and
Chromium's net log shows the pages asked for nothing elsewhere. With docs turned
off, none of it exists.

The browser tests need Debian's `chromium`: without it they are skipped, except
under CI (`CI` set), where a missing browser is a failure (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.served import uvicorn_serving

PAGES = ("/docs", "/redoc")
ASSETS = (
    "/docs/assets/swagger-ui-bundle.js",
    "/docs/assets/swagger-ui.css",
    "/docs/assets/redoc.standalone.js",
    "/docs/assets/favicon.png",
)
#: Content type expected of an asset, by extension (`nosniff` makes it matter).
ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
_REFERENCE = re.compile(r"""(?:src|href|url)\s*[=:]\s*["']([^"']+)["']""")
_ABSOLUTE_URL = re.compile(r"""https?://[^\s"'<>)]+""")

CHROMIUM_BINARIES = ("chromium", "chromium-browser")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--no-first-run",
    "--no-proxy-server",
    # Offline: no host name resolves, only the loopback server can be reached.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    # Scripts run and fetches finish (virtual time waits for the network) before the dump.
    "--virtual-time-budget=15000",
)
BROWSER_SECONDS = 120


def _references(html: str) -> list[str]:
    return _REFERENCE.findall(html)


def _operation_ids(app: FastAPI) -> set[str]:
    paths = app.openapi()["paths"]
    return {operation["operationId"] for item in paths.values() for operation in item.values()}


@pytest.mark.parametrize("page", PAGES)
async def test_docs_page_references_only_its_own_origin(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    absolute = _ABSOLUTE_URL.findall(response.text)
    assert all(url.startswith(f"{client.base_url}/") for url in absolute), absolute
    references = _references(response.text)
    assert references and all(url.startswith("/") for url in references), references


@pytest.mark.parametrize("page", PAGES)
async def test_assets_of_a_docs_page_are_served_with_their_content_type(
    client: httpx.AsyncClient, page: str
) -> None:
    html = (await client.get(page)).text
    assets = [url for url in _references(html) if url.startswith("/docs/assets/")]
    assert len(assets) >= 2, assets  # the UI's script, and at least the favicon
    for url in assets:
        response = await client.get(url)
        assert response.status_code == 200, url
        assert ASSET_TYPES[Path(url).suffix] in response.headers["content-type"], url
        assert response.content


async def test_docs_pages_keep_the_browser_on_this_origin(client: httpx.AsyncClient) -> None:
    for page in (*PAGES, "/docs/oauth2-redirect"):
        policy = (await client.get(page)).headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'self'", page
        assert directives["img-src"].startswith("'self'"), page
        assert "unsafe-inline" not in directives["script-src"], page


async def test_docs_routes_are_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]


async def test_with_docs_disabled_no_docs_page_or_asset_exists(
    make_client: Callable[..., AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]],
) -> None:
    async with make_client(docs_enabled=False) as (_, http):
        for url in (*PAGES, "/docs/oauth2-redirect", "/openapi.json", *ASSETS):
            assert (await http.get(url)).status_code == 404, url


# ---------------------------------------------------------------- in a browser


@dataclass
class Visit:
    dom: str
    #: What the page (its document and everything it loaded) asked the network for.
    requested: set[str]


@pytest.fixture
def chromium() -> str:
    for name in CHROMIUM_BINARIES:
        if found := shutil.which(name):
            return found
    if os.environ.get("CI"):
        pytest.fail("no chromium on PATH: CI checks the docs pages in it (.ci/run installs it)")
    pytest.skip("no chromium on PATH (apt-get install chromium); CI runs these tests")


def _page_requests(net_log: Path, origin: str) -> set[str]:
    """URLs from Chromium's net log that the page asked for: its document, and what
    its scripts and markup loaded (initiator: the page's origin). The browser's own
    background requests (updates, accounts) have no initiator and are left out."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return {
        params["url"]
        for event in log["events"]
        if event["type"] == start_job
        and "url" in (params := event.get("params", {}))
        and (params.get("request_type") == "main frame" or params.get("initiator") == origin)
    }


async def visit(chromium: str, url: str, origin: str, scratch: Path) -> Visit:
    """`url` rendered by headless Chromium, run beside the server on this loop."""
    net_log = scratch / "net-log.json"
    process = await asyncio.create_subprocess_exec(
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={scratch / 'profile'}",
        f"--log-net-log={net_log}",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), BROWSER_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"chromium did not render {url} in {BROWSER_SECONDS} s") from None
    assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]
    return Visit(stdout.decode(), _page_requests(net_log, origin))


def assert_only_from(visit: Visit, origin: str, *expected: str) -> None:
    assert {f"{origin}{path}" for path in expected} <= visit.requested, visit.requested
    elsewhere = {url for url in visit.requested if not url.startswith(f"{origin}/")}
    assert not elsewhere, elsewhere


async def test_swagger_ui_renders_every_operation_offline(
    app: FastAPI, chromium: str, tmp_path: Path
) -> None:
    async with uvicorn_serving(app) as origin:
        page = await visit(chromium, f"{origin}/docs", origin, tmp_path)
    rendered = set(
        re.findall(r'<div class="opblock opblock-\w+[^"]*" id="operations-[^"]*-(\w+)"', page.dom)
    )
    assert rendered == _operation_ids(app)
    assert 'data-path="/core/login"' in page.dom and 'data-path="/api/crud"' in page.dom
    assert '<div class="opblock-summary-description">Login</div>' in page.dom
    assert '<button class="btn authorize' in page.dom
    assert_only_from(
        page,
        origin,
        "/docs",
        "/openapi.json",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
    )


async def test_redoc_renders_every_operation_offline(
    app: FastAPI, chromium: str, tmp_path: Path
) -> None:
    async with uvicorn_serving(app) as origin:
        page = await visit(chromium, f"{origin}/redoc", origin, tmp_path)
    rendered = set(re.findall(r'data-item-id="[^"]*operation/(\w+)"', page.dom))
    assert rendered == _operation_ids(app)
    assert 'aria-label="Login"' in page.dom and 'aria-label="Insert Documents"' in page.dom
    assert_only_from(page, origin, "/redoc", "/openapi.json", "/docs/assets/redoc.standalone.js")
