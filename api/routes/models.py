"""``GET /api/models``, ``GET /api/models/{model_id}/history`` and
``GET /api/models/{model_id}/evidence``: materialized summaries.

A history is found by its model's exact id: ``layout.history_key`` is injective, so
``fake__stable`` can never be served ``fake/stable``'s file (the old ``/`` → ``__`` slugs made
them one file, and their files are never read).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from api.deps import IfNoneMatch, SummariesDep
from api.schemas import MAX_ID_CHARS, ErrorResponse, ModelId
from api.summaries import summary_response
from tasks.storage.layout import evidence_key, history_key, latest_key
from tasks.summaries.payloads import MODELS, HistoryPayload, ModelEvidencePayload, ModelsPayload

router = APIRouter(tags=["models"])

# The same rule as a submission's model_id: an id the API would never store is a 422, not a 404.
_MODEL_ID = TypeAdapter(ModelId)

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
               200: {"description": "The nightly flow's `model-history/{slug}.json` of "
                                    "this model: its project days and its community days."},
               422: {"model": ErrorResponse, "description": "Bad model id."}},
)
async def history(
    model_id: Annotated[str, Path(max_length=MAX_ID_CHARS, examples=["openai/gpt-4o"])],
    summaries: SummariesDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """One model's daily history (model ids contain '/', e.g. ``openai/gpt-4o``): ``days`` from
    the project's own runs, ``community_days`` from community submissions."""
    try:
        summary = await summaries.get(_model_key(history_key, model_id))
    except KeyError:
        raise HTTPException(404, f"no history for model {model_id!r}") from None
    return summary_response(summary, if_none_match)


@router.get(
    "/api/models/{model_id:path}/evidence",
    response_model=ModelEvidencePayload,
    responses={**_READ_RESPONSES,
               200: {"description": "The nightly flow's `model-evidence/{slug}.json`: baseline "
                                    "and recent answers of the prompts with the strongest "
                                    "evidence, and a word diff."},
               404: {"model": ErrorResponse,
                     "description": "No evidence: the model is not on watch or drifting."},
               422: {"model": ErrorResponse, "description": "Bad model id."}},
)
async def evidence(
    model_id: Annotated[str, Path(max_length=MAX_ID_CHARS, examples=["openai/gpt-4o"])],
    summaries: SummariesDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Before and after for a model on ``watch`` or ``drifting``: per prompt (the strongest
    evidence first) its most common baseline answer, its most common recent answer, and a
    word-level diff between them."""
    try:
        summary = await summaries.get(_model_key(evidence_key, model_id))
    except KeyError:
        raise HTTPException(
            404, f"no before/after evidence for model {model_id!r}: it is published only for "
            "models whose last nightly verdict is watch or drifting") from None
    return summary_response(summary, if_none_match)


def _model_key(key_of: Callable[[str], str], model_id: str) -> str:
    """A model's summary key; an id the API would never store is a 422."""
    try:
        return key_of(_MODEL_ID.validate_python(model_id))
    except ValidationError as exc:
        reason = "; ".join(e["msg"] for e in exc.errors(include_url=False))
        raise HTTPException(422, f"invalid model_id {model_id!r}: {reason}") from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
