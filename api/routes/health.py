"""``GET /api/health``: storage reachable, time of the last nightly run, version, spool backlog."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import FlusherDep, SpoolDep, StoreDep
from api.schemas import HealthResponse
from tasks import __version__
from tasks.storage.layout import latest_key
from tasks.summaries.payloads import NIGHTLY_STATUS, NightlyStatus, parse_summary

router = APIRouter(tags=["health"])


@router.get(
    "/api/health", response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Storage unreachable."}},
)
def health(store: StoreDep, spool: SpoolDep, flusher: FlusherDep) -> JSONResponse:
    body = HealthResponse(
        status="ok", version=__version__, storage="ok", last_nightly=None,
        pending_submissions=spool.pending_count(), flush_error=flusher.last_error,
    )
    status = 200
    key = latest_key(NIGHTLY_STATUS)
    try:
        nightly = parse_summary(NightlyStatus, store.get(key), key)
        body.last_nightly = nightly.finished_at.isoformat()
    except KeyError:
        pass  # no nightly run yet: healthy, just empty
    except Exception as exc:  # the store itself is unreachable (or nightly.json is unreadable)
        body.status, body.storage = "degraded", f"error: {type(exc).__name__}: {exc}"
        status = 503
    return JSONResponse(body.model_dump(mode="json"), status_code=status)
