"""The dashboard: one HTML page and its static assets, served by the API process itself.

The page is plain HTML/CSS and JavaScript modules with no build step and nothing from another
origin (there is no internet at run time); it reads the JSON the read API serves, same origin.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    # ES modules load only when served with a JavaScript type (browsers enforce it strictly).
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

# Everything is revalidated on each load (a 304 costs one small request per file): the page's ES
# modules import each other by plain names, so a cached old module next to a new one after an
# upgrade could break the page, and there are no fingerprinted file names without a build step.
_PAGE_CACHE = "no-cache"
_ASSET_CACHE = "no-cache"

# Everything the page needs is loaded from the same origin and nothing runs inline, so the
# policy can be strict: a summary field rendered by mistake as markup still could not run script.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class StaticAsset:
    """One file of ``static/``, as served: its bytes, its media type and its ETag."""

    body: bytes
    media_type: str
    etag: str


def load_assets(folder: Path) -> dict[str, StaticAsset]:
    """Every servable file under ``folder``, read once and keyed by its relative path
    (``js/views/model.js``): requests can only name files in this table, so no path from a URL
    ever reaches the file system. Hidden files, files of other types and symbolic links (which
    could point outside the folder) are left out."""
    assets: dict[str, StaticAsset] = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root, name)
            media_type = _MEDIA_TYPES.get(path.suffix)
            if name.startswith(".") or media_type is None or path.is_symlink():
                continue
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            assets[path.relative_to(folder).as_posix()] = StaticAsset(body, media_type, etag)
    return assets


_ASSETS = load_assets(STATIC_DIR)

router = APIRouter(tags=["dashboard"])


def _serve(request: Request, asset: StaticAsset, cache_control: str) -> Response:
    headers = {
        "ETag": asset.etag,
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": _CSP,
    }
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/", include_in_schema=False)
@router.get("/dashboard", include_in_schema=False)
def dashboard_page(request: Request) -> Response:
    """The dashboard page (its data comes from ``/api/*`` in the browser)."""
    return _serve(request, _ASSETS["index.html"], _PAGE_CACHE)


@router.get("/static/{path:path}", include_in_schema=False)
def static_asset(path: str, request: Request) -> Response:
    """A stylesheet or script module of the dashboard (``/static/js/views/model.js``)."""
    asset = _ASSETS.get(path)
    if asset is None:
        raise HTTPException(status_code=404, detail=f"no static file {path!r}")
    return _serve(request, asset, _ASSET_CACHE)
