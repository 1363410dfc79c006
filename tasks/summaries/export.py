"""Exports: the published summaries as flat tables in CSV, JSON or Parquet, and a user's raw rows.

Three datasets come from the files the nightly flow published (never from raw data):

- ``models``: one row per model of ``models.json`` (nested objects flattened into dotted
  columns, e.g. ``community.verdict``),
- ``drift``: one row per drift test of ``drift.json`` (project and community tests; the
  ``evidence`` column tells them apart),
- ``history``: one row per day of one model's ``model-history`` file (project and community
  days, again told apart by ``evidence``).

The three formats hold the same table: a JSON export is a list of row objects, a CSV or Parquet
export the same rows and columns. Nested objects become dotted columns and lists become JSON text
(a CSV cell cannot hold a list), so a CSV read back has exactly what the JSON says. Column types
come from the payload (dates stay dates in Parquet; CSV spells them ISO 8601).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import PlumblineError
from tasks.records.gdpr import user_table
from tasks.storage.base import ObjectStore
from tasks.storage.layout import history_key, latest_key
from tasks.summaries.payloads import DRIFT, MODELS

Dataset = Literal["models", "drift", "history"]
Format = Literal["csv", "json", "parquet"]
DATASETS: tuple[Dataset, ...] = ("models", "drift", "history")
FORMATS: tuple[Format, ...] = ("csv", "json", "parquet")

MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
}


class ExportError(PlumblineError):
    """An export that cannot be made: an unknown dataset, a missing model, nothing published."""


@dataclass(frozen=True)
class Export:
    """One export, encoded: its bytes, media type and the file name a download should get."""

    body: bytes
    media_type: str
    filename: str
    rows: int


def summary_key(dataset: Dataset, model: str | None = None) -> str:
    """The published file a dataset is read from (``history`` needs its model id)."""
    if dataset == "models":
        return latest_key(MODELS)
    if dataset == "drift":
        return latest_key(DRIFT)
    if dataset == "history":
        if not model:
            raise ExportError("the history export needs a model id (model=provider/model)")
        try:
            return history_key(model)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
    raise ExportError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")


def flatten(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """One JSON object as one flat row: nested objects as dotted columns, lists as JSON text."""
    row: dict[str, Any] = {}
    for key, value in item.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            row.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            row[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        else:
            row[name] = value
    return row


def rows_of(dataset: Dataset, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The dataset's items in a published payload, flattened, in the payload's order."""
    if dataset == "models":
        items: Iterable[dict[str, Any]] = payload.get("models", [])
    elif dataset == "drift":
        items = [*payload.get("tests", []), *payload.get("community_tests", [])]
    else:
        model_id = payload.get("model_id")
        items = [{"model_id": model_id, **day}
                 for day in (*payload.get("days", []), *payload.get("community_days", []))]
    return [flatten(item) for item in items]


def _column(values: list[Any]) -> pl.Series:
    """A column typed by its JSON values: ISO dates and timestamps parsed, else as Polars infers."""
    series = pl.Series(values, strict=False)
    if series.dtype == pl.Null:  # no value in any row: text, so every format can spell it
        return series.cast(pl.String)
    if series.dtype == pl.String:
        for parse in (lambda s: s.str.to_date("%Y-%m-%d", strict=True),
                      lambda s: s.str.to_datetime(strict=True, time_zone="UTC")):
            try:
                return parse(series)
            except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError):
                continue
    return series


def frame_of(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """The rows as a typed frame with every column any row has, in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    data = {c: _column([row.get(c) for row in rows]) for c in columns}
    return pl.DataFrame([s.alias(c) for c, s in data.items()]) if data else pl.DataFrame()


def encode(frame: pl.DataFrame, rows: list[dict[str, Any]], fmt: Format) -> bytes:
    """The frame in ``fmt``; the JSON export is the flattened rows themselves."""
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()
    buf = io.BytesIO()
    if fmt == "csv":
        frame.write_csv(buf, datetime_format="%Y-%m-%dT%H:%M:%S%.fZ", date_format="%Y-%m-%d")
    elif fmt == "parquet":
        frame.write_parquet(buf, compression="zstd")
    else:
        raise ExportError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return buf.getvalue()


def export_summary(body: bytes, dataset: Dataset, fmt: Format, model: str | None = None) -> Export:
    """A published summary file's bytes as a ``dataset`` export in ``fmt``."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ExportError(f"the published {dataset} summary is not valid JSON: {exc}") from None
    rows = rows_of(dataset, payload)
    frame = frame_of(rows)
    stem = dataset if dataset != "history" else f"history-{_safe_name(model or 'model')}"
    return Export(encode(frame, rows, fmt), MEDIA_TYPES[fmt], f"{stem}.{fmt}", len(rows))


def export_from_store(
    store: ObjectStore, dataset: Dataset, fmt: Format, model: str | None = None
) -> Export:
    """Read the published file from the store and export it (what ``plumbline export`` does)."""
    key = summary_key(dataset, model)
    try:
        body = store.get(key)
    except KeyError:
        what = f"model {model!r} has no published history" if dataset == "history" else \
            f"{dataset} has not been published yet (run the nightly flow: plumbline nightly)"
        raise ExportError(f"nothing to export: {what}") from None
    return export_summary(body, dataset, fmt, model)


def export_user_rows(store: ObjectStore, user_id: str) -> Export:
    """Every raw row a user submitted (live files, deduplicated) as one ZSTD Parquet file."""
    try:
        table: pa.Table = user_table(store, user_id)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return Export(buf.getvalue(), MEDIA_TYPES["parquet"], f"rows-{user_id}.parquet",
                  table.num_rows)


def _safe_name(text: str) -> str:
    """A model id as a file-name part: anything but letters, digits, '.', '_' and '-' becomes
    '_' (a download name only; storage keys use the injective slug)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:120]
