"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with their scripts served by this process.

FastAPI's built-in pages load Swagger UI and ReDoc from a CDN, so on a host without internet
access only ``/openapi.json`` worked. Here the bundles come from the ``fastapi-offline`` package
(Swagger UI 5 and ReDoc 2, as published by their projects), read once at import and served under
``/docs/assets/`` from the same origin; nothing on either page names another origin. One change
to ReDoc's bundle: its side menu shows Redocly's logo from Redocly's CDN, an image no option turns
off, so the URL is blanked (the logo's component removes itself when its image fails) and the
page asks nothing of another host.

The pages carry no inline script (Swagger UI is started by a small script of our own, ReDoc starts
itself from its ``<redoc spec-url>`` element), so both policies allow scripts from this origin
only, as the dashboard's does. Swagger UI's policy is the dashboard's. ReDoc's allows two more
things its bundle needs: inline ``<style>`` elements (styled-components inserts them as it
renders; a nonce would not cover the stylesheet a bundled module inserts as it loads, before
ReDoc reads its options) and workers from ``blob:`` URLs (its search index runs in one). An
inline style cannot run script, and with images, fonts and connections limited to this origin
it cannot send anything elsewhere either.
"""

from __future__ import annotations

import hashlib
import html
from importlib.resources import files

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from api.routes.dashboard import StaticAsset

# Where ``/docs`` looks for its assets; the pages and the schema URL are relative to the app's
# root path (``--root-path`` behind a proxy), as FastAPI's own pages are.
ASSET_PREFIX = "/docs/assets/"

# Starts Swagger UI with FastAPI's default parameters, except that the schema is never sent to a
# validator (Swagger UI's default is validator.swagger.io, another origin).
_SWAGGER_INIT = b"""// Plumbline: starts Swagger UI on #swagger-ui (a file, not inline: the CSP
// allows no inline script). The schema URL is the element's data-openapi-url attribute.
"use strict";
(function () {
  var element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: element.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
"""

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_REDOC_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src blob:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# The image ReDoc's side menu loads from Redocly's CDN (see the module's docstring).
REDOCLY_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_CACHE = "no-cache"  # revalidated each load (an ETag makes that a 304): an upgrade shows at once


def _asset(body: bytes, media_type: str) -> StaticAsset:
    return StaticAsset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def load_assets() -> dict[str, StaticAsset]:
    """The files ``/docs/assets/`` serves, by name: requests can only name a key of this table,
    so no part of a URL ever reaches the file system."""
    shipped = files("fastapi_offline").joinpath("static")
    return {
        "swagger-ui-bundle.js": _asset(shipped.joinpath("swagger-ui-bundle.js").read_bytes(),
                                       "text/javascript; charset=utf-8"),
        "swagger-ui.css": _asset(shipped.joinpath("swagger-ui.css").read_bytes(),
                                 "text/css; charset=utf-8"),
        "redoc.standalone.js": _asset(
            shipped.joinpath("redoc.standalone.js").read_bytes().replace(REDOCLY_LOGO, b""),
            "text/javascript; charset=utf-8"),
        "favicon.png": _asset(shipped.joinpath("favicon.png").read_bytes(), "image/png"),
        "swagger-init.js": _asset(_SWAGGER_INIT, "text/javascript; charset=utf-8"),
    }


_ASSETS = load_assets()

router = APIRouter(tags=["docs"])


def _headers(etag: str | None = None, csp: str = _CSP) -> dict[str, str]:
    headers = {"Cache-Control": _CACHE, "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": csp}
    if etag is not None:
        headers["ETag"] = etag
    return headers


def _urls(request: Request) -> tuple[str, str]:
    """The asset prefix and the schema URL under the app's root path, escaped for an attribute.
    (The root path is the operator's ``--root-path``, not the client's; escaped all the same.)"""
    root = request.scope.get("root_path", "")
    schema = root + (request.app.openapi_url or "/openapi.json")
    return html.escape(root + ASSET_PREFIX), html.escape(schema)


def _page(request: Request, kind: str, head: str, body: str, csp: str = _CSP) -> Response:
    assets, _ = _urls(request)
    text = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(request.app.title)} - {kind}</title>\n"
        f'<link rel="icon" type="image/png" href="{assets}favicon.png">\n'
        f"{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )
    return Response(text, media_type="text/html; charset=utf-8", headers=_headers(csp=csp))


@router.get("/docs", include_in_schema=False)
def swagger_ui(request: Request) -> Response:
    """Swagger UI on ``/openapi.json``, with "Try it out" against this origin."""
    assets, schema = _urls(request)
    return _page(
        request, "Swagger UI",
        head=f'<link rel="stylesheet" href="{assets}swagger-ui.css">\n',
        body=(f'<div id="swagger-ui" data-openapi-url="{schema}"></div>\n'
              f'<script src="{assets}swagger-ui-bundle.js"></script>\n'
              f'<script src="{assets}swagger-init.js"></script>\n'),
    )


@router.get("/redoc", include_in_schema=False)
def redoc(request: Request) -> Response:
    """ReDoc on ``/openapi.json`` (a read-only reference on one page)."""
    assets, schema = _urls(request)
    return _page(
        request, "ReDoc", head="",
        body=(f'<redoc spec-url="{schema}"></redoc>\n'
              f'<script src="{assets}redoc.standalone.js"></script>\n'),
        csp=_REDOC_CSP,
    )


@router.get(ASSET_PREFIX + "{name}", include_in_schema=False)
def docs_asset(name: str, request: Request) -> Response:
    """One of the bundles the two pages load (``/docs/assets/swagger-ui-bundle.js``)."""
    asset = _ASSETS.get(name)
    if asset is None:
        raise HTTPException(status_code=404, detail=f"no docs asset {name!r}")
    headers = _headers(asset.etag)
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
