"""The dashboard's routes: the page and its assets are served, cached and self-contained.

What the page renders is tested in a real browser in ``test_dashboard_browser.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

from api import create_app
from api.routes.dashboard import STATIC_DIR, load_assets
from tasks.settings import Settings
from tasks.storage.local import LocalStore

JS_TYPE = "text/javascript; charset=utf-8"
# A static `import … from "…"` or `export … from "…"`, at the start of a line of a module.
IMPORT = re.compile(
    r"""^\s*(?:import|export)\s+(?:[\w*{}\s,$]+?\s+from\s+)?["']([^"']+)["']""", re.MULTILINE)


def _static_files(suffix: str = "") -> list[Path]:
    return sorted(p for p in STATIC_DIR.rglob(f"*{suffix}") if p.is_file())


@pytest.fixture
def client(store: LocalStore, tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path / "data"), store))


@pytest.mark.parametrize("path", ["/", "/dashboard"])
def test_page_is_served_as_html(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Plumbline" in resp.text
    assert '<script type="module" src="/static/js/main.js"></script>' in resp.text
    assert "script-src 'self'" in resp.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("js/main.js", JS_TYPE), ("js/views/model.js", JS_TYPE),
     ("dashboard.css", "text/css; charset=utf-8")],
)
def test_assets_are_served_with_their_type(client: TestClient, name: str, media_type: str) -> None:
    resp = client.get(f"/static/{name}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == media_type
    assert resp.content == (STATIC_DIR / name).read_bytes()
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_unchanged_page_revalidates_with_304(client: TestClient) -> None:
    first = client.get("/static/js/main.js")
    # Revalidated every load: an old cached module beside a new one after an upgrade would break
    # the page's imports.
    assert first.headers["cache-control"] == "no-cache"
    again = client.get("/static/js/main.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    page = client.get("/")
    assert page.headers["cache-control"] == "no-cache"  # a new release shows at once
    assert client.get("/", headers={"If-None-Match": page.headers["etag"]}).status_code == 304


@pytest.mark.parametrize(
    "path",
    ["/static/missing.js", "/static/..%2Fapp.py", "/static/%2e%2e/routes/dashboard.py",
     "/static/../../pyproject.toml", "/static/", "/static/js", "/static/js/",
     "/static/js/../../routes/dashboard.py", "/static/js/%2e%2e/%2e%2e/app.py",
     "/static/js/views/..%2F..%2F..%2Fapp.py", "/static//etc/passwd", "/static/%2Fetc%2Fpasswd",
     "/static/js/main.js/..", "/static/JS/MAIN.JS"],
)
def test_only_known_assets_are_served(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert b"import" not in resp.content


def test_dashboard_routes_stay_out_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/dashboard"} & set(paths)
    assert not [p for p in paths if p.startswith("/static")]


def test_only_plain_files_inside_the_folder_are_servable(tmp_path: Path) -> None:
    """The asset table is the only way to a file: links out of the folder, hidden files and
    files of other types never enter it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.js").write_text("secret")
    static = tmp_path / "static"
    (static / "js" / "views").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html>")
    (static / "js" / "main.js").write_text("import './views/a.js';")
    (static / "js" / "views" / "a.mjs").write_text("export {};")
    (static / "js" / "notes.md").write_text("not served")
    (static / "js" / ".hidden.js").write_text("hidden")
    (static / ".git").mkdir()
    (static / ".git" / "x.js").write_text("hidden folder")
    (static / "js" / "linked.js").symlink_to(outside / "secret.js")
    (static / "linked-dir").symlink_to(outside, target_is_directory=True)
    assets = load_assets(static)
    assert sorted(assets) == ["index.html", "js/main.js", "js/views/a.mjs"]
    assert assets["js/views/a.mjs"].media_type == JS_TYPE
    assert assets["js/main.js"].body == b"import './views/a.js';"


def test_every_module_the_page_imports_is_served_as_javascript(client: TestClient) -> None:
    """A browser refuses a module served with another type: follow the page's imports, from its
    <script type="module"> through every module, as the browser would."""
    page = client.get("/").text
    entries = re.findall(r'<script type="module" src="([^"]+)"></script>', page)
    assert entries == ["/static/js/main.js"]
    assert "<script>" not in page and "<script " not in page.replace('<script type="module"', "")
    seen: set[str] = set()
    queue = list(entries)
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert resp.headers["content-type"] == JS_TYPE, url
        for spec in IMPORT.findall(resp.text):
            # Relative specifiers only: nothing resolves to another origin or a bare package.
            assert spec.startswith(("./", "../")) and spec.endswith(".js"), (url, spec)
            queue.append(urljoin(url, spec))
        assert not re.search(r"\bimport\s*\(", resp.text), f"{url}: dynamic import"
    # Every shipped module is part of the page (no dead files), and nothing else is JavaScript.
    shipped = {"/static/" + p.relative_to(STATIC_DIR).as_posix() for p in _static_files(".js")}
    assert seen == shipped


def test_page_loads_nothing_from_other_origins() -> None:
    """No CDN, no web font, no analytics: the service runs without internet access."""
    for path in _static_files():
        text = path.read_text()
        remote = re.findall(r"""(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//""", text)
        assert not remote, f"{path.name} loads from another origin: {remote}"
        assert "@import" not in text and "fonts.googleapis" not in text, path.name
    # The only network access is the same-origin read API, all of it in js/api.js.
    fetching = [p.name for p in _static_files(".js")
                if re.search(r"\b(?:fetch|XMLHttpRequest|WebSocket|EventSource|sendBeacon)\b",
                             p.read_text())]
    assert fetching == ["api.js"]
    js = (STATIC_DIR / "js" / "api.js").read_text()
    assert set(re.findall(r'getJSON\("([^"]+)"\)', js)) == {
        "/api/health", "/api/data/chart", "/api/models", "/api/drift"}
    per_model = "/api/models/${modelId.split(\"/\").map(encodeURIComponent).join(\"/\")}"
    assert re.findall(r"getJSON\(`([^`]+)`\)", js) == [
        f"{per_model}/history", f"{per_model}/evidence"]


@pytest.mark.parametrize("path", _static_files(".js"), ids=lambda p: p.name)
def test_script_never_inserts_api_values_as_markup(path: Path) -> None:
    # Model ids come from community submissions: the page builds DOM nodes and sets textContent.
    markup = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write")
    assert not markup.search(path.read_text())
