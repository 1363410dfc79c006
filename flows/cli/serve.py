"""``plumbline serve``, ``up`` and ``api``: the long-running processes (the served deployments,
the whole local stack, the FastAPI app)."""

from __future__ import annotations

import os
from typing import Annotated, Any

from cyclopts import Parameter, validators

from flows.cli.common import Host, Port, Verbose


def serve_api(host: str, port: int, settings: Any = None, workers: int | None = None) -> int:
    """Serve the Plumbline API with uvicorn until interrupted (3 if it could not start)."""
    from api.server import serve as serve_uvicorn
    from tasks.settings import get_settings

    # The production server config: proxy headers only from TRUSTED_PROXIES, bounded headers.
    settings = settings or get_settings()
    return serve_uvicorn(settings, host=host, port=port,
                         workers=workers if workers is not None else settings.api_workers)


def api(
    *, host: Host = "127.0.0.1", port: Port = 8000,
    workers: Annotated[int | None, Parameter(
        validator=validators.Number(gte=1, lte=64),
        help="Worker processes (default: API_WORKERS, else 1). They share the port, the spool "
             "and the per-IP rate limit.")] = None,
) -> int:
    """Serve the read/submit API.

    Serve the FastAPI app (summaries, the dashboard, submissions) with uvicorn.
    """
    return serve_api(host, port, workers=workers)


def _prefect_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def serve(
    *,
    limit: Annotated[
        int | None, Parameter(help="Most flow runs at once (default: no limit).")
    ] = None,
) -> int:
    """Serve every deployment with its schedule from one process.

    Register the run-suite, daily-canary (06:00 UTC), nightly (02:00 UTC) and compaction
    deployments with the Prefect server at PREFECT_API_URL and run their flow runs in this
    process until interrupted (the embedded default: no work pool, no worker).
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from tasks.errors import PlumblineError

    if _prefect_api_url() is None:
        # Without a server Prefect would serve against a throwaway in-process API whose
        # scheduler never runs: the schedules would silently never fire.
        raise PlumblineError(
            "plumbline serve needs a running Prefect server: start one with `prefect server "
            "start` and set PREFECT_API_URL=http://127.0.0.1:4200/api, or run `plumbline up`, "
            "which starts the server, the UI, the served flows and the API together"
        )
    from deployments.serve import serve as serve_deployments

    serve_deployments(limit=limit)
    return 0


def up(
    *,
    host: Annotated[str, Parameter(help="Interface for both servers.")] = "127.0.0.1",
    prefect_port: Annotated[int, Parameter(help="Prefect server and UI port.")] = 4200,
    api_port: Annotated[int, Parameter(help="Plumbline API port.")] = 8000,
    startup_timeout: Annotated[
        float, Parameter(help="Seconds to wait for each part to come up.")
    ] = 180.0,
    verbose: Verbose = False,
) -> int:
    """Start the Prefect server and UI, the served flows and the API.

    Start a local Prefect server with its UI, serve every deployment with its schedule, and
    serve the Plumbline API; print their URLs; stop all of them together on Ctrl-C or SIGTERM.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from deployments.up import Stack, run_up

    return run_up(Stack(host=host, prefect_port=prefect_port, api_port=api_port,
                        verbose=verbose, startup_timeout=startup_timeout))
