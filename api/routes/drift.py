"""``GET /api/drift``: the latest drift verdicts, served from ``summaries/latest/drift.json``."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from api.deps import IfNoneMatch, SummariesDep
from api.schemas import ErrorResponse
from api.summaries import summary_response
from tasks.storage.layout import latest_key
from tasks.summaries.payloads import DRIFT, DriftPayload

router = APIRouter(tags=["drift"])


# The stored bytes are served as they are; the response model only documents them.
@router.get(
    "/api/drift",
    response_model=DriftPayload,
    responses={200: {"description": "The nightly flow's `drift.json`."},
               304: {"description": "Not modified (If-None-Match matched the ETag)."},
               404: {"model": ErrorResponse, "description": "Not materialized yet."}},
)
async def drift(summaries: SummariesDep, if_none_match: IfNoneMatch = None) -> Response:
    """Every drift test of the last nightly run, with its window and thresholds."""
    try:
        summary = await summaries.get(latest_key(DRIFT))
    except KeyError:
        raise HTTPException(
            404, "no drift report yet: the nightly flow has not published drift.json"
        ) from None
    return summary_response(summary, if_none_match)
