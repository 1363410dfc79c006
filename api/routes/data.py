"""``GET /api/data/chart``: the seed's chart JSON, served from ``summaries/latest/chart.json``."""

from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import IfNoneMatch, SummariesDep
from api.summaries import Summary, make_etag, summary_response
from tasks.storage.layout import latest_key
from tasks.summaries.payloads import CHART, ChartPayload

router = APIRouter(tags=["data"])

_EMPTY_BODY = json.dumps(
    ChartPayload(data=[], models=[], total_submissions=0).model_dump(mode="json")).encode()
_EMPTY_CHART = Summary(_EMPTY_BODY, make_etag(_EMPTY_BODY))


# The route returns the stored bytes as they are: the response model documents them in
# /openapi.json, it does not re-validate or re-serialise them on each request.
@router.get(
    "/api/data/chart",
    response_model=ChartPayload,
    responses={200: {"description": "`{data: [{date, <model_id>: count}], models, "
                                    "total_submissions}`"},
               304: {"description": "Not modified (If-None-Match matched the ETag)."}},
)
async def chart(summaries: SummariesDep, if_none_match: IfNoneMatch = None) -> Response:
    """Submissions per day per model, as materialized by the nightly flow."""
    try:
        summary = await summaries.get(latest_key(CHART))
    except KeyError:
        summary = _EMPTY_CHART  # before the first nightly run: an empty chart, not an error
    return summary_response(summary, if_none_match)
