"""``GET /api/models`` and ``GET /api/models/{model_id}/history``: materialized summaries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import Response

from api.deps import IfNoneMatch, SummariesDep
from api.schemas import MAX_ID_CHARS, ErrorResponse
from api.summaries import summary_response
from tasks.storage.layout import history_key, latest_key
from tasks.summaries.payloads import MODELS, HistoryPayload, ModelsPayload

router = APIRouter(tags=["models"])

# The routes serve the stored bytes as they are; their response models only document them.
_READ_RESPONSES: dict[int | str, dict[str, object]] = {
    304: {"description": "Not modified (If-None-Match matched the ETag)."},
    404: {"model": ErrorResponse, "description": "Not materialized yet."},
}


@router.get(
    "/api/models",
    response_model=ModelsPayload,
    responses={**_READ_RESPONSES, 200: {"description": "The nightly flow's `models.json`."}},
)
async def models(summaries: SummariesDep, if_none_match: IfNoneMatch = None) -> Response:
    """Every tracked model with its latest figures, as materialized by the nightly flow."""
    try:
        summary = await summaries.get(latest_key(MODELS))
    except KeyError:
        raise HTTPException(
            404, "no model summary yet: the nightly flow has not published models.json"
        ) from None
    return summary_response(summary, if_none_match)


@router.get(
    "/api/models/{model_id:path}/history",
    response_model=HistoryPayload,
    responses={**_READ_RESPONSES,
               200: {"description": "The nightly flow's `history/{slug}.json` of this model."},
               422: {"model": ErrorResponse, "description": "Bad model id."}},
)
async def history(
    model_id: Annotated[str, Path(max_length=MAX_ID_CHARS, examples=["openai/gpt-4o"])],
    summaries: SummariesDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """One model's daily history (model ids contain '/', e.g. ``openai/gpt-4o``)."""
    try:
        key = history_key(model_id)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        summary = await summaries.get(key)
    except KeyError:
        raise HTTPException(404, f"no history for model {model_id!r}") from None
    return summary_response(summary, if_none_match)
