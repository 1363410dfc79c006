"""Materialized summaries the read API serves: ``summaries/latest/*.json``.

``chart.json`` (the seed's chart), ``models.json`` (a verdict per model), ``drift.json`` (every
test of the night), ``history/{slug}.json`` (one model's days) and ``nightly.json`` (when the
nightly run finished), each the JSON of its model in ``tasks.summaries.payloads``. Every file is
written atomically by the store, so a reader sees last night's file or tonight's, never half of one.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
from pydantic import BaseModel

from tasks.drift.metrics import daily_consistency
from tasks.drift.report import DriftReport
from tasks.storage.base import ObjectStore
from tasks.storage.layout import LATEST, history_key, latest_key
from tasks.summaries.payloads import (
    CHART,
    DRIFT,
    MODELS,
    NIGHTLY_STATUS,
    ChartPayload,
    DriftPayload,
    DriftSettings,
    DriftTest,
    DriftWindow,
    HistoryDay,
    HistoryPayload,
    ModelsPayload,
    ModelSummary,
    NightlyStatus,
)

HISTORY_PREFIX = f"{LATEST}/history/"
logger = logging.getLogger("plumbline.publish")

# The columns of the daily summaries the publish stage reads (never the per-row score or
# output-length lists, which only the drift stage needs).
HISTORY_COLUMNS = ["date", "model_id", "suite", "prompt_id", "rows", "scored", "passes",
                   "score_values", "latency_values", "output_len_values", "distinct_outputs",
                   "cost_usd", "output_hashes"]

# drift.json's test columns, in the order of the model's fields (the frame is serialised by
# Polars, not by the model).
DRIFT_TEST_FIELDS = list(DriftTest.model_fields)


def dump_json(payload: BaseModel | Any) -> bytes:
    """Compact JSON of a payload model (or a plain value), as every summary file is written."""
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def chart_payload(daily: pl.DataFrame) -> ChartPayload:
    """The seed's chart: ``{data: [{date, <model_id>: count}], models, total_submissions}``."""
    if daily.is_empty():
        return ChartPayload(data=[], models=[], total_submissions=0)
    per_day = (
        daily.group_by("date", "model_id").agg(pl.col("rows").sum())
        .sort("date", "model_id")
    )
    models = sorted(per_day["model_id"].unique().to_list())
    data: dict[str, dict[str, Any]] = {}
    for row in per_day.iter_rows(named=True):
        day = row["date"].isoformat()
        data.setdefault(day, {"date": day})[row["model_id"]] = int(row["rows"])
    return ChartPayload.model_validate({
        "data": [data[d] for d in sorted(data)],
        "models": models,
        "total_submissions": int(per_day["rows"].sum()),
    })


def put_json(store: ObjectStore, name: str, payload: BaseModel | Any) -> str:
    key = latest_key(name)
    store.put(key, dump_json(payload))
    return key


def publish_chart(store: ObjectStore, daily: pl.DataFrame) -> str:
    return put_json(store, CHART, chart_payload(daily))


def publish_status(store: ObjectStore, **fields: Any) -> str:
    """When the nightly flow last finished and what it did (``/api/health`` reports it);
    ``fields`` are the other fields of ``NightlyStatus``."""
    return put_json(store, NIGHTLY_STATUS, NightlyStatus(finished_at=datetime.now(UTC), **fields))


def _window(report: DriftReport) -> DriftWindow:
    return DriftWindow.model_validate(report.window, from_attributes=True)


def models_payload(report: DriftReport, last_seen: dict[str, date]) -> ModelsPayload:
    """``models.json``: per model its windows, pass rates, consistency and verdict.

    Models seen before the windows but not in them are listed as ``insufficient_data``.
    """
    by_id = {m["model_id"]: m for m in report.models}
    models = []
    for model_id in sorted(set(last_seen) | set(by_id)):
        m = by_id.get(model_id) or {
            "rows_recent": 0, "rows_baseline": 0,
            "pass_rate_recent": None, "pass_rate_baseline": None, "consistency": None,
            "consistency_band": None, "verdict": "insufficient_data",
            "reasons": ["no rows in the recent or baseline window"], "significant_tests": 0,
            "suites": [],
        }
        models.append(ModelSummary.model_validate({
            "model_id": model_id, "last_seen": last_seen.get(model_id),
            **{k: v for k, v in m.items() if k != "model_id"}}))
    return ModelsPayload(generated_at=datetime.now(UTC), window=_window(report), models=models)


def drift_tests_frame(report: DriftReport) -> pl.DataFrame:
    """The night's tests in ``drift.json``'s shape (non-finite numbers become null)."""
    t = report.tests
    floats = [c for c, dt in t.schema.items() if dt == pl.Float64]
    return t.with_columns(
        [pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c) for c in floats]
    ).with_columns(
        suite=pl.when(pl.col("suite") == "").then(None).otherwise(pl.col("suite")),
        ci_recent=pl.when(pl.col("ci_low").is_not_null())
        .then(pl.concat_list("ci_low", "ci_high")),
    ).select(DRIFT_TEST_FIELDS)


def drift_json_bytes(report: DriftReport) -> bytes:
    """``drift.json`` (a ``DriftPayload``); the test list is serialised by Polars straight from
    the frame, since a night can hold 100k tests (the tests check it against ``DriftTest``)."""
    payload = DriftPayload(
        generated_at=datetime.now(UTC), window=_window(report),
        config=DriftSettings.model_validate(report.config, from_attributes=True), tests=[])
    head = dump_json(payload.model_dump(mode="json", exclude={"tests"}))
    tests = drift_tests_frame(report)
    body = tests.write_json().encode() if tests.height else b"[]"
    return head[:-1] + b',"tests":' + body + b"}"


def history_frames(daily: pl.DataFrame) -> pl.DataFrame:
    """Per model × day: rows, pass rate, score mean, latency p50/p95, distinct outputs, mean
    output length, cost and day-over-day consistency."""
    if daily.is_empty():
        return pl.DataFrame()
    per_day = daily.group_by("model_id", "date").agg(
        rows=pl.col("rows").sum(),
        passes=pl.col("passes").sum(),
        scored=pl.col("scored").sum(),
        score_sum=pl.col("score_values").list.sum().sum(),
        score_n=pl.col("score_values").list.len().sum(),
        len_sum=pl.col("output_len_values").list.sum().cast(pl.Float64).sum(),
        len_n=pl.col("output_len_values").list.len().sum(),
        distinct_outputs=pl.col("distinct_outputs").sum(),
        cost_usd=pl.when(pl.col("cost_usd").is_null().any()).then(None)
        .otherwise(pl.col("cost_usd").sum()),
    )
    latency = (
        daily.select("model_id", "date", "latency_values").explode("latency_values")
        .group_by("model_id", "date")
        .agg(latency_p50_ms=pl.col("latency_values").quantile(0.5, "linear"),
             latency_p95_ms=pl.col("latency_values").quantile(0.95, "linear"))
    )
    consistency = daily_consistency(daily).select("model_id", "date", "consistency")
    return (
        per_day.join(latency, on=["model_id", "date"], how="left")
        .join(consistency, on=["model_id", "date"], how="left")
        .with_columns(
            pass_rate=pl.when(pl.col("scored") > 0).then(pl.col("passes") / pl.col("scored")),
            score_mean=pl.when(pl.col("score_n") > 0)
            .then(pl.col("score_sum") / pl.col("score_n")),
            output_len_mean=pl.when(pl.col("len_n") > 0)
            .then(pl.col("len_sum") / pl.col("len_n")),
        )
        .select("model_id", *HistoryDay.model_fields)
        .sort("model_id", "date")
    )


def publish_history(store: ObjectStore, daily: pl.DataFrame) -> list[str]:
    """One ``history/{slug}.json`` per model; files of models no longer present are removed."""
    frame = history_frames(daily)
    keys = []
    if not frame.is_empty():
        for (model_id,), part in frame.partition_by("model_id", as_dict=True).items():
            try:
                key = history_key(str(model_id))
            except ValueError:
                # An id that cannot be a file name (the submit API refuses those) must not
                # cost the other models their history.
                logger.warning("no history file for model id %r: not a safe key", model_id)
                continue
            days = part.drop("model_id").to_dicts()
            store.put(key, dump_json(HistoryPayload.model_validate(
                {"model_id": model_id, "days": days})))
            keys.append(key)
    for obj in store.list(HISTORY_PREFIX):
        if obj.key not in keys:
            store.delete(obj.key)
    return keys


def publish_drift(
    store: ObjectStore, report: DriftReport, last_seen: dict[str, date]
) -> dict[str, str]:
    """Write ``models.json`` and ``drift.json`` for the night's report."""
    store.put(latest_key(DRIFT), drift_json_bytes(report))
    models_key = put_json(store, MODELS, models_payload(report, last_seen))
    return {"models": models_key, "drift": latest_key(DRIFT)}


def _fmt(value: Any, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


def render_report(report: DriftReport, models: list[dict[str, Any]] | None = None) -> str:
    """The night's drift report as markdown (the Prefect artifact)."""
    w = report.window
    models = models if models is not None else report.models
    counts: dict[str, int] = {}
    for m in models:
        counts[m["verdict"]] = counts.get(m["verdict"], 0) + 1
    lines = [
        f"# Plumbline drift report — {w.as_of.isoformat()}",
        "",
        f"Recent window {w.recent_start} → {w.as_of} ({w.recent_days} days) against the "
        f"baseline {w.baseline_start} → {w.baseline_end} ({w.baseline_days} days). "
        f"{report.tests.height} tests, Benjamini–Hochberg at α = {report.config.alpha}.",
        "",
        "Verdicts: " + (", ".join(f"{v} {n}" for v, n in sorted(counts.items())) or "none"),
        "",
        "| model | verdict | pass rate (baseline → recent) | consistency "
        "| rows (recent/baseline) |",
        "| --- | --- | --- | --- | --- |",
    ]
    order = {"drifting": 0, "watch": 1, "insufficient_data": 2, "stable": 3}
    for m in sorted(models, key=lambda m: (order.get(m["verdict"], 9), m["model_id"])):
        lines.append(
            f"| `{m['model_id']}` | **{m['verdict']}** | {_fmt(m['pass_rate_baseline'])} → "
            f"{_fmt(m['pass_rate_recent'])} | {_fmt(m['consistency'], '{:.0%}')} "
            f"({m['consistency_band'] or '–'}) | {m['rows_recent']}/{m['rows_baseline']} |"
        )
    flagged = [m for m in models if m.get("reasons") and m["verdict"] != "stable"]
    if flagged:
        lines += ["", "## Why"]
        for m in flagged:
            lines.append(f"- `{m['model_id']}` ({m['verdict']}):")
            lines += [f"  - {r}" for r in m["reasons"]]
    return "\n".join(lines) + "\n"
