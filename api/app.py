"""The app factory: settings and store are passed in, so tests and servers build their own."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.routes import dashboard, data, health
from tasks import __version__
from tasks.settings import Settings
from tasks.storage import ObjectStore, open_store


def create_app(settings: Settings | None = None, store: ObjectStore | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Plumbline API",
        version=__version__,
        description="Summaries of scheduled LLM evaluations, and community submissions.",
    )
    app.state.settings = settings
    app.state.store = store if store is not None else open_store(settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match"],
        )
    app.include_router(health.router)
    app.include_router(data.router)
    app.include_router(dashboard.router)
    return app
