"""A small Chrome DevTools Protocol client for the browser tests: find Chromium, start it headless,
open a tab, and drive the tab (navigate, evaluate, click, type, screenshot) while it records every
request, response and error of the page.

A tab given an ``allowed`` origin may reach that origin and nothing else: the ``Fetch`` domain
pauses every request the page makes, and the tab lets through only those to ``allowed`` and fails
the rest (kept in ``blocked``). It answers ``Fetch.requestPaused`` while it waits for any command.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# URLs that never leave the page: inline images and ReDoc's search worker.
LOCAL_SCHEMES = ("data:", "blob:")

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
    "--hide-scrollbars", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
)


def find_chromium() -> str | None:
    """``PLUMBLINE_CHROMIUM``, else the first Chromium on PATH; None when there is none."""
    found = os.environ.get("PLUMBLINE_CHROMIUM") or next(
        (p for name in CHROMIUM_NAMES if (p := shutil.which(name))), None)
    # CI installs Chromium (.ci/run): there a missing browser is a failure, not a silent skip.
    if found is None and os.environ.get("CI"):
        raise RuntimeError("CI is set but no Chromium was found: .ci/run should have installed it")
    return found


CHROMIUM = find_chromium()


def skip_without_chromium(what: str) -> pytest.MarkDecorator:
    """Skip, with the reason, when no Chromium is installed; ``what`` names the test."""
    return pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium on PATH (apt-get install chromium, or set PLUMBLINE_CHROMIUM): "
        f"{what} needs a real headless browser",
    )


@contextmanager
def start_chromium(*flags: str) -> Iterator[tuple[str, str]]:
    """A headless Chromium with the common flags and ``flags``: yields (DevTools host:port, its
    browser ws url), and stops it and removes its profile afterwards."""
    assert CHROMIUM is not None
    profile = Path(tempfile.mkdtemp(prefix="plumbline-chromium-"))
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, *flags, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Chromium writes its chosen port to DevToolsActivePort once it listens.
        port_file = profile / "DevToolsActivePort"
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


class Tab:
    """One browser tab over the DevTools protocol: just what the browser tests need.

    ``allowed`` (an origin) turns on the request blocker; ``init_script`` runs before any script
    of every page (DevTools-injected, so the page's CSP does not apply to it); ``ready`` is what
    ``open`` waits for (by default: the page at the URL has loaded); ``timeout`` is how long
    ``wait_for`` waits.
    """

    def __init__(self, ws: ClientConnection, allowed: str | None = None,
                 init_script: str | None = None, ready: str | None = None,
                 timeout: float = 10) -> None:
        self.ws = ws
        self.allowed = allowed.rstrip("/") + "/" if allowed else None
        self.ready = ready
        self.timeout = timeout
        self.next_id = 0
        self.errors: list[str] = []  # uncaught exceptions, console and browser errors
        self.requests: list[str] = []  # every URL the page asked for, in order, allowed or not
        self.blocked: list[str] = []  # those the blocker failed
        self.responses: dict[str, tuple[str, int, str]] = {}  # url: (resource type, status, mime)
        for domain in ("Network", "Runtime", "Log", "Page"):  # Log: CSP violations, among others
            self.send(f"{domain}.enable")
        if init_script:
            self.send("Page.addScriptToEvaluateOnNewDocument", source=init_script)
        if self.allowed:
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
            self.record(msg)

    def record(self, msg: dict[str, Any]) -> None:
        """Keep what an event says; answer a paused request (allowed origin or fail)."""
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Fetch.requestPaused":
            url = params["request"]["url"]
            if self.allowed and url.startswith(self.allowed):
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
            # An HTTP error answer (a 404 or 503) is logged as a network error: the page handles
            # those itself. Requests that were blocked are kept in `blocked` instead.
            if entry.get("source") != "network":
                self.errors.append(f"{entry.get('source')}: {entry['text']}")

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.js(f"Boolean({expression})"):
            if time.monotonic() > deadline:
                blocked = f"; blocked: {self.blocked}" if self.allowed else ""
                raise AssertionError(
                    f"timed out waiting for {expression}; errors: {self.errors}{blocked}")
            time.sleep(0.05)

    def open(self, url: str, width: int = 1280, height: int = 900,
             ready: str | None = None) -> None:
        """Navigate at that window size, and wait for ``ready`` (else the tab's readiness)."""
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=width < 700)
        self.send("Page.navigate", url=url)
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        self.wait_for(ready or self.ready or loaded)

    def foreign(self) -> list[str]:
        """Every request the page made (or tried) to anywhere but the allowed origin."""
        urls = self.requests + self.blocked
        return [u for u in urls if not (self.allowed and u.startswith(self.allowed))
                and not u.startswith(LOCAL_SCHEMES)]

    def dom(self) -> str:
        return str(self.js("document.documentElement.outerHTML"))

    def click(self, selector: str) -> None:
        """A real mouse click at the middle of the element."""
        box = self.js(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " el.scrollIntoView({block: 'center'}); const r = el.getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"],
                      button="left", clickCount=1)

    def press(self, key: str, code: int, text: str | None = None) -> None:
        down: dict[str, Any] = {"key": key, "code": key, "windowsVirtualKeyCode": code}
        extra = {"text": text} if text else {}
        self.send("Input.dispatchKeyEvent", type="keyDown", **down, **extra)
        self.send("Input.dispatchKeyEvent", type="keyUp", **down)

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        """A PNG of the whole page (up to 4000 px high), or of the window only."""
        if not full_page:
            shot = self.send("Page.captureScreenshot", format="png")
        else:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                             clip={"x": 0, "y": 0, "width": size["width"],
                                   "height": min(size["height"], 4000), "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))


@contextmanager
def open_tab(browser: tuple[str, str], allowed: str | None = None, *,
             init_script: str | None = None, ready: str | None = None,
             timeout: float = 10) -> Iterator[Tab]:
    """A new tab (target) in ``browser`` (from ``start_chromium``), closed afterwards; the
    options are ``Tab``'s."""
    host, browser_ws = browser
    with connect(browser_ws, max_size=None) as control:
        control.send(json.dumps({"id": 1, "method": "Target.createTarget",
                                 "params": {"url": "about:blank"}}))
        target = next(m for m in iter(lambda: json.loads(control.recv(timeout=30)), None)
                      if m.get("id") == 1)["result"]["targetId"]
        try:
            with connect(f"ws://{host}/devtools/page/{target}", max_size=None) as ws:
                yield Tab(ws, allowed, init_script, ready, timeout)
        finally:
            control.send(json.dumps({"id": 2, "method": "Target.closeTarget",
                                     "params": {"targetId": target}}))
