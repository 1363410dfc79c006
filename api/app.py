"""The app factory: settings and store are passed in, so tests and servers build their own."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from api.flusher import SpoolFlusher
from api.limits import BodyLimitMiddleware, HeaderLimitMiddleware, RateLimitMiddleware
from api.metrics import ApiMetrics, MetricsMiddleware
from api.routes import (
    dashboard,
    data,
    docs,
    drift,
    export,
    health,
    metrics,
    models,
    submit,
    user,
)
from api.spool import Spool
from api.summaries import SummaryCache
from tasks import __version__
from tasks.errors import SpoolError, StorageError
from tasks.records.compaction import STALE_INTENT_AFTER
from tasks.settings import Settings
from tasks.storage import ObjectStore, open_store
from tasks.storage.base import purge_temporaries

log = logging.getLogger(__name__)

_ECHO_CHARS = 200


def _validation_body(exc: RequestValidationError) -> bytes:
    """FastAPI's 422 body (``detail``: one entry per bad field with its ``loc``), except that the
    echoed input is cut short (a 100 kB output need not come back) and the JSON is ASCII (an input
    with a lone surrogate must still render)."""
    errors = []
    for err in exc.errors():
        err = dict(err)
        value = err.get("input")
        if isinstance(value, str) and len(value) > _ECHO_CHARS:
            err["input"] = value[:_ECHO_CHARS] + "..."
        elif isinstance(value, dict | list) and len(json.dumps(value, default=str)) > _ECHO_CHARS:
            err.pop("input")
        errors.append(err)
    return json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True).encode()


def _sweep_temporaries(store: ObjectStore) -> None:
    """Remove stale leftovers of interrupted writes in the whole store (a local ``.tmp-*`` file,
    an unfinished B2 upload): a process killed mid-write, this one's predecessor included, may
    have left them in days no compaction will visit again."""
    try:
        removed = purge_temporaries(store, "", older_than=STALE_INTENT_AFTER)
    except Exception as exc:  # an outage now is reported by health; the next start tries again
        log.warning("could not remove stale temporary files: %s", exc)
        return
    if removed:
        log.info("removed %d stale temporary file(s) left by interrupted writes", removed)


def create_app(settings: Settings | None = None, store: ObjectStore | None = None) -> FastAPI:
    settings = settings or Settings()
    store = store if store is not None else open_store(settings)
    spool_dir = settings.spool_dir or settings.data_dir / "spool"
    app_metrics = ApiMetrics(max_models=settings.metrics_max_models)

    def open_spool() -> Spool:
        return Spool(spool_dir, dedupe_keep_seconds=settings.dedupe_keep_days * 86400,
                     dedupe_max_keys=settings.dedupe_max_keys)

    def new_flusher(spool: Spool) -> SpoolFlusher:
        return SpoolFlusher(spool, store, flush_rows=settings.spool_flush_rows,
                            flush_seconds=settings.spool_flush_seconds,
                            on_failure=app_metrics.flush_failed)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Start: replay whatever a previous process acknowledged but did not flush. Stop: flush
        # what is left; on failure it stays spooled for the next start. (An app may be started
        # again after a stop, as test clients do: it then reopens its spool.)
        if app.state.spool.closed:
            app.state.spool = open_spool()
        flusher = app.state.flusher = new_flusher(app.state.spool)
        flusher.start()
        # In the background: a large store takes a while to walk, and serving need not wait.
        threading.Thread(
            target=_sweep_temporaries, args=(store,), name="temp-sweep", daemon=True
        ).start()
        try:
            yield
        finally:
            flusher.stop(final_flush=True)
            app.state.spool.close()

    app = FastAPI(
        title="Plumbline API",
        version=__version__,
        description="Summaries of scheduled LLM evaluations, and community submissions.",
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc load their scripts from a CDN: api/routes/docs.py serves
        # both pages with the bundles shipped in a package instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.spool = open_spool()
    app.state.flusher = new_flusher(app.state.spool)  # replaced by a running one at startup
    app.state.summaries = SummaryCache(store, settings.summary_cache_seconds)
    app.state.health_probe = health.HealthProbe()
    app.state.metrics = app_metrics

    # Added innermost first: CORS is outermost so even a 431, 429 or 413 carries its headers.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.rate_limit_per_minute > 0:
        app.add_middleware(
            RateLimitMiddleware, per_minute=settings.rate_limit_per_minute,
            trusted_proxies=settings.trusted_proxies, state_dir=spool_dir,
        )
    app.add_middleware(HeaderLimitMiddleware, max_bytes=settings.max_header_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match"],
            expose_headers=["ETag", "Retry-After"],
        )
    if settings.metrics_on:
        # Outermost: the limits' and CORS' own answers are counted too.
        app.add_middleware(MetricsMiddleware, metrics=app_metrics, routes=lambda: app.routes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return Response(_validation_body(exc), status_code=422, media_type="application/json")

    @app.exception_handler(StorageError)
    async def _storage_unavailable(request: Request, exc: StorageError) -> JSONResponse:
        log.warning("storage error on %s: %s", request.url.path, exc)
        return JSONResponse({"detail": f"storage unavailable: {exc}"}, status_code=503)

    @app.exception_handler(SpoolError)
    async def _spool_unavailable(request: Request, exc: SpoolError) -> JSONResponse:
        return JSONResponse({"detail": f"submission not stored, please retry: {exc}"},
                            status_code=503)

    app.include_router(health.router)
    app.include_router(data.router)
    app.include_router(models.router)
    app.include_router(drift.router)
    app.include_router(export.router)
    app.include_router(submit.router)
    app.include_router(user.router)
    app.include_router(dashboard.router)
    app.include_router(docs.router)
    if settings.metrics_on:
        app.include_router(metrics.router)
    return app
