"""``POST /api/submit`` and ``POST /api/submit/batch``: community results, acknowledged once
durable in the spool (see api/spool.py), deduplicated per user (see api/submissions.py)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException

from api.deps import OptionalUserDep, SpoolDep
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


async def _durable(spool: Spool, entries: list[SpoolEntry]) -> list[Outcome]:
    try:
        return await asyncio.wrap_future(spool.submit(entries))
    except SpoolError as exc:
        raise HTTPException(503, f"submission not stored, please retry: {exc}") from None


def _response(outcome: Outcome) -> SubmitResponse:
    return SubmitResponse(status=outcome.status, id=outcome.id, hash=outcome.hash)


@router.post("/api/submit", response_model=SubmitResponse, responses=_RESPONSES)
async def submit(
    payload: SubmitRequest, user_id: OptionalUserDep, spool: SpoolDep
) -> SubmitResponse:
    """One result (the Pramana CLI's payload). ``duplicate`` when this user already sent it."""
    try:
        entry = build_entry(payload, user_id)
    except HashMismatchError as exc:
        raise HTTPException(422, str(exc)) from None
    (outcome,) = await _durable(spool, [entry])
    return _response(outcome)


@router.post("/api/submit/batch", response_model=BatchSubmitResponse, responses=_RESPONSES)
async def submit_batch(
    payload: BatchSubmitRequest, user_id: OptionalUserDep, spool: SpoolDep
) -> BatchSubmitResponse:
    """Many results, all or nothing: one bad result refuses the batch, naming its index."""
    entries = []
    for i, item in enumerate(payload.results):
        try:
            entries.append(build_entry(item, user_id))
        except HashMismatchError as exc:
            raise HTTPException(422, f"results[{i}]: {exc}") from None
    outcomes = await _durable(spool, entries)
    results = [_response(o) for o in outcomes]
    accepted = sum(o.status == "accepted" for o in outcomes)
    return BatchSubmitResponse(
        accepted=accepted, duplicates=len(outcomes) - accepted, results=results
    )
