"""``/api/user/me``: a signed-in user's own stats, and deleting or anonymizing their data.

GDPR operations hold the spool's exclusive lock (a lock file: it holds against the flushes of
every API worker process sharing the spool), so no flush writes the user's rows halfway through:
a delete also drops their not-yet-flushed submissions; an anonymize flushes them first so they
are anonymized with the rest. Either way the spool then truncates its write-ahead log, and the
store operation also removes leftovers of interrupted writes (``tasks/records/gdpr.py``), so
no copy of the user's id survives on the server. Both are safe to repeat after a 503.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from api.deps import SettingsDep, SpoolDep, StoreDep, UserDep
from api.schemas import DeleteResponse, ErrorResponse, UserStatsResponse
from api.spool import Spool
from tasks.errors import SpoolError
from tasks.records import gdpr
from tasks.summaries.export import export_user_rows

router = APIRouter(tags=["user"])

_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "No valid token."},
    503: {"model": ErrorResponse,
          "description": "Storage or the spool failed; the operation is safe to repeat."},
}


def _forget(spool: Spool, user_id: str, *, keep_pending: bool = False) -> int:
    try:
        return spool.forget_user(user_id, keep_pending=keep_pending)
    except SpoolError as exc:
        raise HTTPException(503, f"not finished, please retry: {exc}") from None


@router.get("/api/user/me/stats", response_model=UserStatsResponse, responses=_RESPONSES)
def my_stats(user_id: UserDep, store: StoreDep, spool: SpoolDep) -> UserStatsResponse:
    """How many results you submitted, for which models, and when last (unflushed included)."""
    stored = gdpr.user_stats(store, user_id)
    pending = spool.pending_stats(user_id)
    lasts = [t for t in (stored.last_submission, pending.last_submission) if t is not None]
    return UserStatsResponse(
        user_id=user_id,
        count=stored.count + pending.count,
        models_tested=sorted(set(stored.models_tested) | set(pending.models)),
        last_submission=max(lasts) if lasts else None,
    )


@router.get(
    "/api/user/me/export",
    responses={**_RESPONSES,
               200: {"description": "Every row you submitted that has been stored, as one ZSTD "
                                    "Parquet file (the raw record schema).",
                     "content": {"application/vnd.apache.parquet": {}}}},
)
def export_me(user_id: UserDep, store: StoreDep) -> Response:
    """Download your own stored rows as Parquet (submissions still in the spool, not yet
    flushed, are not in it: see ``/api/user/me/stats`` for their count)."""
    made = export_user_rows(store, user_id)
    return Response(made.body, media_type=made.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{made.filename}"',
                             "Cache-Control": "private, no-store"})


@router.delete("/api/user/me", response_model=DeleteResponse, responses=_RESPONSES)
def delete_me(
    user_id: UserDep, store: StoreDep, spool: SpoolDep, settings: SettingsDep,
    anonymize_only: Annotated[
        bool, Query(description="Keep your results but move them to the anonymous partition.")
    ] = False,
) -> DeleteResponse:
    """Delete everything you submitted, or (``anonymize_only=true``) detach it from you."""
    with spool.exclusive():
        if anonymize_only:
            try:
                spool.flush(store, batch_rows=settings.spool_flush_rows)
            except Exception as exc:
                raise HTTPException(
                    503, f"could not flush pending submissions before anonymizing: {exc}"
                ) from None
            rows = gdpr.anonymize_user(store, user_id)
            _forget(spool, user_id, keep_pending=True)
            return DeleteResponse(status="anonymized", rows=rows)
        dropped = _forget(spool, user_id)
        files = gdpr.delete_user(store, user_id)
        return DeleteResponse(status="deleted", files=files, pending_dropped=dropped)
