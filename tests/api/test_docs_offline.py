"""``/docs`` and ``/redoc`` in a headless Chromium that may reach nothing but the API (issue 14).

The API runs as ``plumbline api`` does (api/server.py under uvicorn, in a subprocess). The browser
cannot leave 127.0.0.1 twice over: its host resolver maps every other name to "not found"
(``--host-resolver-rules``), and the DevTools ``Fetch`` domain pauses every request the page
makes, lets through only those to the API's origin and fails the rest. Every request is
recorded, so the tests can show that the pages render their operations and that nothing was even
attempted elsewhere. A control test shows the blocker bites: FastAPI's stock page, which loads
Swagger UI from a CDN, renders nothing under it.

The DevTools client is tests/support/cdp.py, shared with tests/api/test_dashboard_browser.py;
given the allowed origin, its tab answers ``Fetch.requestPaused`` while it waits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import create_app
from api.routes.docs import ASSET_PREFIX, REDOCLY_LOGO
from tasks.settings import Settings
from tasks.storage.local import LocalStore
from tests.api.conftest import SECRET
from tests.api.uvicorn_server import Server, serve_in_thread
from tests.support.cdp import Tab, open_tab, skip_without_chromium, start_chromium

needs_chromium = skip_without_chromium("the offline docs test")

# Runs before any script of the page (DevTools-injected, so the page's CSP does not apply to it):
# keeps every CSP violation, so a blocked script or style fails the test instead of passing quietly.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[tuple[str, str]]:
    """A headless Chromium that resolves no host name: yields (DevTools host:port, its ws url)."""
    # Every name but 127.0.0.1 fails to resolve, before any DNS query is sent.
    with start_chromium("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1") as started:
        yield started


def offline_tab(browser: tuple[str, str], allowed: str) -> AbstractContextManager[Tab]:
    """A tab whose requests may go to ``allowed`` (an origin) and nowhere else, recording CSP
    violations in ``window.__violations``."""
    return open_tab(browser, allowed, init_script=RECORD_VIOLATIONS, timeout=20)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API as ``plumbline api`` serves it, on a free 127.0.0.1 port."""
    tmp = tmp_path_factory.mktemp("docs-offline")
    server = Server({"PLUMBLINE_DATA_DIR": str(tmp / "data"),
                     "PLUMBLINE_SPOOL_DIR": str(tmp / "spool"), "PLUMBLINE_STORAGE": "local",
                     "NEXTAUTH_SECRET": SECRET}, tmp / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def operations(api: Server) -> dict[tuple[str, str], str]:
    """(METHOD, path): operationId, for every operation of the API's schema."""
    paths = httpx.get(api.url + "/openapi.json").json()["paths"]
    return {(method.upper(), path): op["operationId"]
            for path, ops in paths.items() for method, op in ops.items()}


def _artifact(tmp_path: Path, name: str) -> Path:
    # PLUMBLINE_SCREENSHOTS keeps the screenshots for a person to look at.
    folder = Path(os.environ.get("PLUMBLINE_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


# ------------------------------------------------------------------------------------ the tests


@needs_chromium
def test_swagger_ui_lists_every_operation_offline(
    browser: tuple[str, str], api: Server, operations: dict[tuple[str, str], str],
    tmp_path: Path,
) -> None:
    with offline_tab(browser, api.url) as tab:
        tab.open(api.url + "/docs")
        tab.wait_for("document.querySelector('.opblock-summary-path[data-path=\"/api/models\"]')")
        listed = tab.js("[...document.querySelectorAll('.opblock')].map(o => ["
                        "o.querySelector('.opblock-summary-method').textContent,"
                        "o.querySelector('.opblock-summary-path').dataset.path])")
        title = tab.js("document.querySelector('.info .title').textContent")

        # "Try it out" on GET /api/models: the request goes to the API, and its answer shows.
        tab.js("document.querySelector('#operations-models-models_api_models_get"
               " .opblock-summary-control').click()")
        tab.wait_for("document.querySelector('#operations-models-models_api_models_get"
                     " .try-out__btn')")
        tab.js("document.querySelector('#operations-models-models_api_models_get"
               " .try-out__btn').click()")
        tab.wait_for("document.querySelector('#operations-models-models_api_models_get"
                     " .execute')")
        tab.js("document.querySelector('#operations-models-models_api_models_get"
               " .execute').click()")
        tab.wait_for("document.querySelector('#operations-models-models_api_models_get"
                     " .live-responses-table tbody .response-col_status')")
        status = tab.js("document.querySelector('#operations-models-models_api_models_get"
                        " .live-responses-table tbody .response-col_status').textContent.trim()")
        violations = tab.js("window.__violations")
        tab.screenshot(_artifact(tmp_path, "docs-offline.png"), full_page=False)
        responses, foreign, errors = dict(tab.responses), tab.foreign(), list(tab.errors)

    assert sorted(map(tuple, listed)) == sorted(operations)
    assert title.startswith("Plumbline API")
    assert status == "404"  # no nightly has run on this empty store: the API's own answer
    assert foreign == []
    assert violations == []
    assert errors == []
    scripts = {u.removeprefix(api.url): mime for u, (kind, _, mime) in responses.items()
               if kind == "Script"}
    assert scripts == {ASSET_PREFIX + "swagger-ui-bundle.js": "text/javascript",
                       ASSET_PREFIX + "swagger-init.js": "text/javascript"}
    assert responses[api.url + "/openapi.json"][1] == 200
    assert responses[api.url + "/api/models"][1] == 404


@needs_chromium
def test_redoc_lists_every_operation_offline(
    browser: tuple[str, str], api: Server, operations: dict[tuple[str, str], str],
    tmp_path: Path,
) -> None:
    with offline_tab(browser, api.url) as tab:
        tab.open(api.url + "/redoc")
        tab.wait_for("document.querySelector('[data-section-id$=\"/operation/"
                     "models_api_models_get\"]')")
        sections = tab.js("[...document.querySelectorAll('[data-section-id*=\"/operation/\"]')]"
                          ".map(s => s.dataset.sectionId.split('/operation/')[1])")
        text = tab.js("document.body.innerText")
        # Search runs in ReDoc's worker (from a blob: URL): it finds an operation by name.
        tab.js("document.querySelector('input.search-input').focus()")
        tab.send("Input.insertText", text="history")
        tab.wait_for("document.querySelector('[data-role=\"search:results\"] [data-item-id$="
                     "\"/operation/history_api_models__model_id__history_get\"]')")
        violations = tab.js("window.__violations")
        tab.screenshot(_artifact(tmp_path, "redoc-offline.png"), full_page=False)
        foreign, errors = tab.foreign(), list(tab.errors)

    assert sorted(set(sections)) == sorted(operations.values())
    assert "/api/models" in text and "Plumbline API" in text
    assert foreign == []
    assert violations == []
    assert errors == []


def test_docs_pages_and_assets_carry_the_security_headers(api: Server) -> None:
    """Scripts from this origin only, nothing from another origin at all, no framing; inline
    styles only on ReDoc's page (its bundle inserts them)."""
    for path in ("/docs", "/redoc", ASSET_PREFIX + "swagger-ui-bundle.js",
                 ASSET_PREFIX + "swagger-init.js", ASSET_PREFIX + "redoc.standalone.js",
                 ASSET_PREFIX + "swagger-ui.css", ASSET_PREFIX + "favicon.png"):
        r = httpx.get(api.url + path)
        assert r.status_code == 200, path
        csp = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
        assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'", path
        assert csp["style-src"] == ("'self' 'unsafe-inline'" if path == "/redoc" else "'self'")
        assert csp["connect-src"] == "'self'" and csp["img-src"] == "'self' data:", path
        assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'", path
        assert "http" not in r.headers["content-security-policy"], path  # no other origin
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["cache-control"] == "no-cache", path
    assert REDOCLY_LOGO not in httpx.get(api.url + ASSET_PREFIX + "redoc.standalone.js").content
    page = httpx.get(api.url + "/docs").text
    assert "<script>" not in page and "cdn" not in page.lower()
    # Assets are revalidated with their ETag; only names of the shipped table are served.
    r = httpx.get(api.url + ASSET_PREFIX + "swagger-ui-bundle.js")
    again = httpx.get(api.url + ASSET_PREFIX + "swagger-ui-bundle.js",
                      headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    for bad in ("..%2Fapp.py", "..%2F..%2Fapi%2Fapp.py", "%2Fetc%2Fpasswd", "favicon.ico"):
        assert httpx.get(api.url + ASSET_PREFIX + bad).status_code == 404, bad


@contextmanager
def _stock_fastapi() -> Iterator[str]:
    """FastAPI's own /docs (Swagger UI from a CDN) under uvicorn on a free 127.0.0.1 port."""
    app = FastAPI(title="stock")

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    with serve_in_thread(app) as url:
        yield url


@needs_chromium
def test_control_the_blocker_stops_a_cdn_page(browser: tuple[str, str]) -> None:
    """Without this, the tests above could pass with a blocker that blocks nothing."""
    with _stock_fastapi() as base, offline_tab(browser, base) as tab:
        tab.open(base + "/docs")
        tab.wait_for("document.querySelectorAll('script').length > 0")
        time.sleep(0.5)  # room for Swagger UI to render, were it loaded
        rendered = tab.js("document.querySelectorAll('.opblock').length")
        loaded = tab.js("typeof window.SwaggerUIBundle")
        blocked = list(tab.blocked)
    assert rendered == 0 and loaded == "undefined"
    assert any(u.startswith("https://cdn.jsdelivr.net/") for u in blocked), blocked


def test_pages_follow_the_root_path_behind_a_proxy(tmp_path: Path) -> None:
    """Under ``--root-path /plumbline`` the pages name their assets and the schema under it, as
    FastAPI's own pages do, so a proxy that serves the API under a prefix still serves the docs."""
    app = create_app(Settings(data_dir=tmp_path / "data"), LocalStore(tmp_path / "store"))
    with TestClient(app, root_path="/plumbline") as client:
        docs, redoc = client.get("/docs").text, client.get("/redoc").text
    assert 'data-openapi-url="/plumbline/openapi.json"' in docs
    assert 'src="/plumbline/docs/assets/swagger-ui-bundle.js"' in docs
    assert 'href="/plumbline/docs/assets/swagger-ui.css"' in docs
    assert '<redoc spec-url="/plumbline/openapi.json">' in redoc
    assert 'src="/plumbline/docs/assets/redoc.standalone.js"' in redoc
