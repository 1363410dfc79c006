"""``GET /api/export/{dataset}``: the published summaries as CSV, JSON or Parquet downloads.

The datasets and their flattening are ``tasks.summaries.export``'s (what ``plumbline export``
writes too). An export is made from the same cached summary bytes the read routes serve, and
the encoded result is kept per (summary ETag, dataset, model, format), so repeated downloads of
an unchanged summary cost a dictionary lookup.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from api.deps import IfNoneMatch, SummariesDep
from api.schemas import MAX_ID_CHARS, ErrorResponse, ModelId
from api.summaries import CACHE_CONTROL, Summary, not_modified
from tasks.summaries.export import (
    Dataset,
    Export,
    ExportError,
    Format,
    export_summary,
    summary_key,
)

router = APIRouter(tags=["export"])

_MODEL_ID = TypeAdapter(ModelId)

# Encoded exports kept in memory: a few per dataset and format is plenty (they are re-made when
# the nightly publishes a new summary, whose ETag differs).
MAX_CACHED_EXPORTS = 32


class _ExportCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, ...], Export] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> Export | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, ...], item: Export) -> None:
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_CACHE = _ExportCache(MAX_CACHED_EXPORTS)


def _etag(summary: Summary, *parts: str) -> str:
    digest = hashlib.sha256("\0".join((summary.etag, *parts)).encode()).hexdigest()[:32]
    return f'"{digest}"'


@router.get(
    "/api/export/{dataset}",
    responses={
        200: {"description": "The dataset as a file: `text/csv`, `application/json` (a list of "
                             "flat row objects) or `application/vnd.apache.parquet`.",
              "content": {"text/csv": {}, "application/vnd.apache.parquet": {}}},
        304: {"description": "Not modified (If-None-Match matched the ETag)."},
        404: {"model": ErrorResponse, "description": "Not materialized yet."},
        422: {"model": ErrorResponse, "description": "Bad dataset, format or model id."},
    },
)
async def export(
    dataset: Annotated[Dataset, Path(description="`models`, `drift` or `history`.")],
    summaries: SummariesDep,
    fmt: Annotated[
        Format, Query(alias="format", description="`csv`, `json` or `parquet`.")] = "json",
    model: Annotated[str | None, Query(
        max_length=MAX_ID_CHARS, description="The model id, for `history` only.",
        examples=["openai/gpt-4o"])] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """One published summary as a flat table: one row per model (`models`), per drift test
    (`drift`) or per day of one model (`history`, with `model=`); nested fields as dotted
    columns, lists as JSON text, the same rows in every format."""
    if dataset != "history" and model is not None:
        raise HTTPException(422, f"model= applies to the history dataset only, not {dataset!r}")
    if model is not None:
        try:
            model = _MODEL_ID.validate_python(model)
        except ValidationError as exc:
            reason = "; ".join(e["msg"] for e in exc.errors(include_url=False))
            raise HTTPException(422, f"invalid model {model!r}: {reason}") from None
    try:
        key = summary_key(dataset, model)
    except (ExportError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        summary = await summaries.get(key)
    except KeyError:
        what = f"no history for model {model!r}" if dataset == "history" else \
            f"no {dataset} summary yet: the nightly flow has not published it"
        raise HTTPException(404, what) from None
    etag = _etag(summary, dataset, model or "", fmt)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if not_modified(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    cache_key = (summary.etag, dataset, model or "", fmt)
    made = _CACHE.get(cache_key)
    if made is None:
        try:
            made = await run_in_threadpool(export_summary, summary.body, dataset, fmt, model)
        except ExportError as exc:
            raise HTTPException(500, str(exc)) from None
        _CACHE.put(cache_key, made)
    headers["Content-Disposition"] = f'attachment; filename="{made.filename}"'
    return Response(made.body, media_type=made.media_type, headers=headers)
