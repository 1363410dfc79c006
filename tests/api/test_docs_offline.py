"""``/docs`` and ``/redoc`` in a headless Chromium that may reach nothing but the API (issue 14).

The API runs as ``plumbline api`` does (api/server.py under uvicorn, in a subprocess). The browser
cannot leave 127.0.0.1 twice over: its host resolver maps every other name to "not found"
(``--host-resolver-rules``), and the DevTools ``Fetch`` domain pauses every request the page
makes, lets through only those to the API's origin and fails the rest. Every request is
recorded, so the tests can show that the pages render their operations and that nothing was even
attempted elsewhere. A control test shows the blocker bites: FastAPI's stock page, which loads
Swagger UI from a CDN, renders nothing under it.

The DevTools client is a small one of its own (tests/api/test_dashboard_browser.py drives the
dashboard the same way) because it has to answer ``Fetch.requestPaused`` while it waits.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from websockets.sync.client import ClientConnection, connect

from api import create_app
from api.routes.docs import ASSET_PREFIX, REDOCLY_LOGO
from tasks.settings import Settings
from tasks.storage.local import LocalStore
from tests.api.conftest import SECRET
from tests.api.uvicorn_server import Server

CHROMIUM = os.environ.get("PLUMBLINE_CHROMIUM") or next(
    (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)
# CI installs Chromium (.ci/run): there a missing browser is a failure, not a silent skip.
if CHROMIUM is None and os.environ.get("CI"):
    raise RuntimeError("CI is set but no Chromium was found: .ci/run should have installed it")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on PATH (apt-get install chromium, or set PLUMBLINE_CHROMIUM): "
    "the offline docs test needs a real headless browser",
)

# URLs that never leave the page: inline images and ReDoc's search worker.
LOCAL_SCHEMES = ("data:", "blob:")

# Runs before any script of the page (DevTools-injected, so the page's CSP does not apply to it):
# keeps every CSP violation, so a blocked script or style fails the test instead of passing quietly.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


class OfflineTab:
    """One browser tab whose requests may go to ``allowed`` (an origin) and nowhere else."""

    def __init__(self, ws: ClientConnection, allowed: str) -> None:
        self.ws = ws
        self.allowed = allowed.rstrip("/") + "/"
        self.next_id = 0
        self.requests: list[str] = []  # every URL the page asked for, allowed or not
        self.blocked: list[str] = []  # those the interceptor failed
        self.responses: dict[str, tuple[str, int, str]] = {}  # url: (type, status, mime)
        self.errors: list[str] = []  # uncaught exceptions, console and browser errors
        for domain in ("Network", "Runtime", "Log", "Page"):
            self.send(f"{domain}.enable")
        self.send("Page.addScriptToEvaluateOnNewDocument", source=RECORD_VIOLATIONS)
        # Every request pauses until answered; data: and blob: URLs never reach the network.
        self.send("Fetch.enable", patterns=[{"urlPattern": "*", "requestStage": "Request"}])

    def post(self, method: str, **params: Any) -> int:
        """Send a command without waiting for its answer (from inside the event loop)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        return self.next_id

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = self.post(method, **params)
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Fetch.requestPaused":
            url = params["request"]["url"]
            if url.startswith(self.allowed):
                self.post("Fetch.continueRequest", requestId=params["requestId"])
            else:
                self.blocked.append(url)
                self.post("Fetch.failRequest", requestId=params["requestId"],
                          errorReason="BlockedByClient")
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.responseReceived":
            resp = params["response"]
            self.responses[resp["url"]] = (params["type"], resp["status"], resp["mimeType"])
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description")))
                                        for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            # An HTTP error answer is logged as a network error: the API's 404 for "no summaries
            # yet" is one. Requests that were blocked are kept in `blocked` instead.
            if entry.get("source") != "network":
                self.errors.append(f"{entry.get('source')}: {entry['text']}")

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(f"Boolean({expression})"):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}; errors: {self.errors}"
                                     f"; blocked: {self.blocked}")
            time.sleep(0.05)

    def open(self, url: str) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                  deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def foreign(self) -> list[str]:
        """Every request the page made (or tried) to anywhere but the allowed origin."""
        urls = self.requests + self.blocked
        return [u for u in urls if not u.startswith((self.allowed, *LOCAL_SCHEMES))]

    def screenshot(self, path: Path) -> None:
        shot = self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture(scope="module")
def browser() -> Iterator[tuple[str, str]]:
    """A headless Chromium that resolves no host name: yields (DevTools host:port, its ws url)."""
    assert CHROMIUM is not None
    profile = Path(tempfile.mkdtemp(prefix="plumbline-chromium-"))
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
         # Every name but 127.0.0.1 fails to resolve, before any DNS query is sent.
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
         "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"  # written once Chromium listens
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        yield f"127.0.0.1:{port}", f"ws://127.0.0.1:{port}{path}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def open_tab(browser: tuple[str, str], allowed: str) -> Iterator[OfflineTab]:
    host, browser_ws = browser
    with connect(browser_ws, max_size=None) as control:
        control.send(json.dumps({"id": 1, "method": "Target.createTarget",
                                 "params": {"url": "about:blank"}}))
        target = next(m for m in iter(lambda: json.loads(control.recv(timeout=30)), None)
                      if m.get("id") == 1)["result"]["targetId"]
        try:
            with connect(f"ws://{host}/devtools/page/{target}", max_size=None) as ws:
                yield OfflineTab(ws, allowed)
        finally:
            control.send(json.dumps({"id": 2, "method": "Target.closeTarget",
                                     "params": {"targetId": target}}))


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
    with open_tab(browser, api.url) as tab:
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
        tab.screenshot(_artifact(tmp_path, "docs-offline.png"))
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
    with open_tab(browser, api.url) as tab:
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
        tab.screenshot(_artifact(tmp_path, "redoc-offline.png"))
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

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@needs_chromium
def test_control_the_blocker_stops_a_cdn_page(browser: tuple[str, str]) -> None:
    """Without this, the tests above could pass with a blocker that blocks nothing."""
    with _stock_fastapi() as base, open_tab(browser, base) as tab:
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
