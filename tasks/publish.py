"""Materialized summaries the read API serves: ``summaries/latest/*.json``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import polars as pl

from tasks.storage.base import ObjectStore
from tasks.storage.layout import latest_key

CHART = "chart.json"
NIGHTLY_STATUS = "nightly.json"


def chart_payload(daily: pl.DataFrame) -> dict[str, Any]:
    """The seed's chart: ``{data: [{date, <model_id>: count}], models, total_submissions}``."""
    if daily.is_empty():
        return {"data": [], "models": [], "total_submissions": 0}
    per_day = (
        daily.group_by("date", "model_id").agg(pl.col("rows").sum())
        .sort("date", "model_id")
    )
    models = sorted(per_day["model_id"].unique().to_list())
    data: dict[str, dict[str, Any]] = {}
    for row in per_day.iter_rows(named=True):
        day = row["date"].isoformat()
        data.setdefault(day, {"date": day})[row["model_id"]] = int(row["rows"])
    return {
        "data": [data[d] for d in sorted(data)],
        "models": models,
        "total_submissions": int(per_day["rows"].sum()),
    }


def put_json(store: ObjectStore, name: str, payload: Any) -> str:
    key = latest_key(name)
    store.put(key, json.dumps(payload, separators=(",", ":"), default=str).encode())
    return key


def publish_chart(store: ObjectStore, daily: pl.DataFrame) -> str:
    return put_json(store, CHART, chart_payload(daily))


def publish_status(store: ObjectStore, **fields: Any) -> str:
    """When the nightly flow last finished and what it did (``/api/health`` reports it)."""
    return put_json(store, NIGHTLY_STATUS, {"finished_at": datetime.now(UTC).isoformat(), **fields})
