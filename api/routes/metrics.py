"""``GET /metrics``: the Prometheus text exposition of the app's metrics (api/metrics.py).

Registered only when ``METRICS_ENABLED`` says so (by default: in development, or with a
``METRICS_TOKEN``); with a token set it answers only ``Authorization: Bearer <token>``. Not under
``/api/``, so the rate limit never applies: Prometheus scrapes on a fixed interval.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api.auth import bearer_token
from api.deps import SettingsDep, SpoolDep, SummariesDep
from api.metrics import CONTENT_TYPE, ApiMetrics, token_matches
from api.schemas import ErrorResponse
from tasks.errors import AuthError

router = APIRouter(tags=["metrics"])


def _check_token(request: Request, expected: str, max_bytes: int) -> None:
    try:
        sent = bearer_token(request.headers.get("authorization"), max_bytes=max_bytes)
    except AuthError:
        sent = None
    if sent is None or not token_matches(sent, expected):
        raise HTTPException(
            401, "/metrics needs 'Authorization: Bearer <METRICS_TOKEN>'",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
              "description": "Prometheus text exposition format 0.0.4 (docs/api.md#metrics)."},
        401: {"model": ErrorResponse,
              "description": "METRICS_TOKEN is set and the request did not carry it."},
    },
)
async def metrics(
    request: Request, settings: SettingsDep, spool: SpoolDep, summaries: SummariesDep
) -> Response:
    """Request counts and latencies, submissions, the spool backlog, the last nightly's counts
    and a verdict and pass rate per published model, for Prometheus to scrape."""
    if settings.metrics_token is not None:
        _check_token(request, settings.metrics_token.get_secret_value(),
                     settings.max_token_bytes)
    app_metrics: ApiMetrics = request.app.state.metrics
    snapshot = await app_metrics.summaries.read(summaries)
    # The spool is read with SQLite: off the event loop.
    body = await run_in_threadpool(app_metrics.render, snapshot, spool)
    return Response(body, media_type=CONTENT_TYPE)
