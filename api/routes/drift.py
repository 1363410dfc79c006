"""``GET /api/drift``: the latest drift verdicts, served from ``summaries/latest/drift.json``."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from api.deps import IfNoneMatch, SummariesDep
from api.schemas import ErrorResponse
from api.summaries import summary_response
from tasks.storage.layout import latest_key

router = APIRouter(tags=["drift"])

DRIFT = "drift.json"


@router.get(
    "/api/drift",
    responses={200: {"content": {"application/json": {}}},
               304: {"description": "Not modified (If-None-Match matched the ETag)."},
               404: {"model": ErrorResponse, "description": "Not materialized yet."}},
)
async def drift(summaries: SummariesDep, if_none_match: IfNoneMatch = None) -> Response:
    """Per-model drift verdicts of the last nightly run."""
    try:
        summary = await summaries.get(latest_key(DRIFT))
    except KeyError:
        raise HTTPException(
            404, "no drift report yet: the nightly flow has not published drift.json"
        ) from None
    return summary_response(summary, if_none_match)
