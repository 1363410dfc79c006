"""``GET /api/data/chart``: the seed's chart JSON, served from ``summaries/latest/chart.json``."""

from __future__ import annotations

import json

import polars as pl
from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import IfNoneMatch, SummariesDep
from api.summaries import Summary, make_etag, summary_response
from tasks.storage.layout import latest_key
from tasks.summaries.publish import CHART, chart_payload

router = APIRouter(tags=["data"])

_EMPTY_BODY = json.dumps(chart_payload(pl.DataFrame())).encode()
_EMPTY_CHART = Summary(_EMPTY_BODY, make_etag(_EMPTY_BODY))
_JSON = {"content": {"application/json": {}}}


@router.get(
    "/api/data/chart",
    responses={200: {"description": "`{data: [{date, <model_id>: count}], models, "
                                    "total_submissions}`", **_JSON},
               304: {"description": "Not modified (If-None-Match matched the ETag)."}},
)
async def chart(summaries: SummariesDep, if_none_match: IfNoneMatch = None) -> Response:
    """Submissions per day per model, as materialized by the nightly flow."""
    try:
        summary = await summaries.get(latest_key(CHART))
    except KeyError:
        summary = _EMPTY_CHART  # before the first nightly run: an empty chart, not an error
    return summary_response(summary, if_none_match)
