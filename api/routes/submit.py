"""``POST /api/submit`` and ``POST /api/submit/batch``: community results, acknowledged once
durable in the spool (see api/spool.py), deduplicated per user (see api/submissions.py)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request

from api.deps import OptionalUserDep, SpoolDep
from api.metrics import HASH_MISMATCH, ApiMetrics, mark_refusal
from api.schemas import (
    BatchSubmitRequest,
    BatchSubmitResponse,
    ErrorResponse,
    SubmitRequest,
    SubmitResponse,
)
from api.spool import Outcome, Spool, SpoolEntry
from api.submissions import HashMismatchError, build_entry
from tasks.errors import SpoolError

router = APIRouter(tags=["submit"])

_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "A token was sent and is invalid."},
    413: {"model": ErrorResponse, "description": "Body too large."},
    429: {"model": ErrorResponse, "description": "Rate limited; see Retry-After."},
    503: {"model": ErrorResponse, "description": "Could not make the submission durable."},
}


async def _durable(request: Request, spool: Spool, entries: list[SpoolEntry]) -> list[Outcome]:
    try:
        outcomes = await asyncio.wrap_future(spool.submit(entries))
    except SpoolError as exc:
        raise HTTPException(503, f"submission not stored, please retry: {exc}") from None
    metrics: ApiMetrics = request.app.state.metrics
    metrics.submitted(outcomes)
    return outcomes


def _hash_mismatch(request: Request, message: str) -> HTTPException:
    mark_refusal(request, HASH_MISMATCH)  # a 422 of its own in the metrics
    return HTTPException(422, message)


def _response(outcome: Outcome) -> SubmitResponse:
    return SubmitResponse(status=outcome.status, id=outcome.id, hash=outcome.hash)


@router.post("/api/submit", response_model=SubmitResponse, responses=_RESPONSES)
async def submit(
    request: Request, payload: SubmitRequest, user_id: OptionalUserDep, spool: SpoolDep
) -> SubmitResponse:
    """One result (the Pramana CLI's payload). ``duplicate`` when this user already sent it."""
    try:
        entry = build_entry(payload, user_id)
    except HashMismatchError as exc:
        raise _hash_mismatch(request, str(exc)) from None
    (outcome,) = await _durable(request, spool, [entry])
    return _response(outcome)


@router.post("/api/submit/batch", response_model=BatchSubmitResponse, responses=_RESPONSES)
async def submit_batch(
    request: Request, payload: BatchSubmitRequest, user_id: OptionalUserDep, spool: SpoolDep
) -> BatchSubmitResponse:
    """Many results, all or nothing: one bad result refuses the batch, naming its index."""
    entries = []
    for i, item in enumerate(payload.results):
        try:
            entries.append(build_entry(item, user_id))
        except HashMismatchError as exc:
            raise _hash_mismatch(request, f"results[{i}]: {exc}") from None
    outcomes = await _durable(request, spool, entries)
    results = [_response(o) for o in outcomes]
    accepted = sum(o.status == "accepted" for o in outcomes)
    return BatchSubmitResponse(
        accepted=accepted, duplicates=len(outcomes) - accepted, results=results
    )
