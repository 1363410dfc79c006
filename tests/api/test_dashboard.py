"""The dashboard's routes: the page and its assets are served, cached and self-contained.

What the page renders is tested in a real browser in ``test_dashboard_browser.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from api.routes.dashboard import STATIC_DIR
from tasks.settings import Settings
from tasks.storage.local import LocalStore


@pytest.fixture
def client(store: LocalStore, tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path / "data"), store))


@pytest.mark.parametrize("path", ["/", "/dashboard"])
def test_page_is_served_as_html(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Plumbline" in resp.text
    assert '<script src="/static/dashboard.js" defer></script>' in resp.text
    assert "script-src 'self'" in resp.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("dashboard.js", "text/javascript; charset=utf-8"),
     ("dashboard.css", "text/css; charset=utf-8")],
)
def test_assets_are_served_with_their_type(client: TestClient, name: str, media_type: str) -> None:
    resp = client.get(f"/static/{name}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == media_type
    assert resp.content == (STATIC_DIR / name).read_bytes()
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_unchanged_page_revalidates_with_304(client: TestClient) -> None:
    first = client.get("/static/dashboard.js")
    again = client.get("/static/dashboard.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    page = client.get("/")
    assert page.headers["cache-control"] == "no-cache"  # a new release shows at once
    assert client.get("/", headers={"If-None-Match": page.headers["etag"]}).status_code == 304


@pytest.mark.parametrize(
    "path",
    ["/static/missing.js", "/static/..%2Fapp.py", "/static/%2e%2e/routes/dashboard.py",
     "/static/../../pyproject.toml", "/static/"],
)
def test_only_known_assets_are_served(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert b"import" not in resp.content


def test_dashboard_routes_stay_out_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/dashboard", "/static/{name}"} & set(paths)


def test_page_loads_nothing_from_other_origins() -> None:
    """No CDN, no web font, no analytics: the service runs without internet access."""
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        remote = re.findall(r"""(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//""", text)
        assert not remote, f"{path.name} loads from another origin: {remote}"
        assert "@import" not in text and "fonts.googleapis" not in text, path.name
    # The only URLs the script fetches are the same-origin read API.
    js = (STATIC_DIR / "dashboard.js").read_text()
    assert set(re.findall(r'getJSON\("([^"]+)"\)', js)) == {
        "/api/health", "/api/data/chart", "/api/models", "/api/drift"}


def test_script_never_inserts_api_values_as_markup() -> None:
    # Model ids come from community submissions: the page builds DOM nodes and sets textContent.
    js = (STATIC_DIR / "dashboard.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", js)
