"""Read endpoints: each serves one materialized file from ``summaries/latest/``."""

from __future__ import annotations

import json

import polars as pl
from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import StoreDep
from tasks.publish import CHART, chart_payload
from tasks.storage.layout import latest_key

router = APIRouter(tags=["data"])

_EMPTY_CHART = json.dumps(chart_payload(pl.DataFrame())).encode()


@router.get("/api/data/chart")
def chart(store: StoreDep) -> Response:
    """Submissions per day per model, as materialized by the nightly flow."""
    try:
        body = store.get(latest_key(CHART))
    except KeyError:
        body = _EMPTY_CHART  # before the first nightly run: an empty chart, not an error
    return Response(body, media_type="application/json")
