"""Materialized summaries the read API serves: ``summaries/latest/*.json``.

``chart.json`` (the seed's chart), ``models.json`` (a verdict per model), ``drift.json`` (every
test of the night), ``model-history/{slug}.json`` (one model's days) and ``nightly.json`` (when
the nightly run finished), each the JSON of its model in ``tasks.summaries.payloads``. Every file
is written atomically by the store, so a reader sees last night's file or tonight's, never half of
one. The project's evidence fills the fields every reader knows; the community's sits beside it,
labelled (``evidence``), from its own report.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
from pydantic import BaseModel

from tasks.drift.config import EVIDENCE_COMMUNITY, EVIDENCE_PROJECT
from tasks.drift.metrics import daily_consistency, prompt_changes
from tasks.drift.report import DriftReport
from tasks.storage.base import ObjectStore
from tasks.storage.layout import (
    LEGACY_HISTORY_PREFIX,
    MODEL_EVIDENCE,
    MODEL_HISTORY,
    evidence_key,
    history_key,
    latest_key,
)
from tasks.summaries.evidence import PROJECT_SOURCES, EvidenceRules
from tasks.summaries.payloads import (
    CHART,
    DRIFT,
    MODELS,
    NIGHTLY_STATUS,
    ChartPayload,
    CommunitySummary,
    DriftPayload,
    DriftSettings,
    DriftTest,
    DriftWindow,
    EvidenceRulesSummary,
    HistoryDay,
    HistoryPayload,
    ModelEvidencePayload,
    ModelsPayload,
    ModelSummary,
    NightlyStatus,
    SemanticStatus,
)

HISTORY_PREFIX = f"{MODEL_HISTORY}/"
EVIDENCE_PREFIX = f"{MODEL_EVIDENCE}/"
logger = logging.getLogger("plumbline.publish")

# The columns of the daily summaries the publish stage reads (never the per-row score or
# output-length lists, which only the drift stage needs).
HISTORY_COLUMNS = ["date", "evidence", "model_id", "suite", "prompt_id", "rows", "scored",
                   "passes", "errors", "answered", "refusals",
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


_NO_ROWS = {
    "rows_recent": 0, "rows_baseline": 0, "pass_rate_recent": None, "pass_rate_baseline": None,
    "consistency": None, "consistency_band": None, "verdict": "insufficient_data",
    "significant_tests": 0, "suites": [], "availability": None,
}


def models_payload(
    report: DriftReport, last_seen: dict[str, date], community: DriftReport | None = None,
    rules: EvidenceRules | None = None,
) -> ModelsPayload:
    """``models.json``: per model its windows, pass rates, consistency and verdict from the
    project's ``report``, and the ``community`` report's verdict beside it.

    Models seen before the windows, or only in community rows, are listed too: their project
    verdict is ``insufficient_data``.
    """
    by_id = {m["model_id"]: m for m in report.models}
    community_by_id = {m["model_id"]: m for m in community.models} if community else {}
    models = []
    for model_id in sorted(set(last_seen) | set(by_id) | set(community_by_id)):
        m = by_id.get(model_id) or {
            **_NO_ROWS, "reasons": ["no rows of the project's own runs in the recent or "
                                    "baseline window"]}
        c = community_by_id.get(model_id)
        models.append(ModelSummary.model_validate({
            "model_id": model_id, "last_seen": last_seen.get(model_id),
            **{k: v for k, v in m.items() if k != "model_id"},
            # Availability is the project's calls': the community's rows say nothing of it.
            "community": CommunitySummary.model_validate(
                {k: v for k, v in c.items() if k not in ("model_id", "availability")})
            if c else None,
        }))
    rules = rules or EvidenceRules()
    return ModelsPayload(
        generated_at=datetime.now(UTC), window=_window(report), models=models,
        evidence_rules=EvidenceRulesSummary(
            project_sources=list(PROJECT_SOURCES),
            community_cap_per_user_day=rules.cap_per_user_day,
            community_anonymous_counted=rules.allow_anonymous))


def drift_tests_frame(report: DriftReport) -> pl.DataFrame:
    """The night's tests in ``drift.json``'s shape (non-finite numbers become null)."""
    t = report.tests
    floats = [c for c, dt in t.schema.items() if dt == pl.Float64]
    return t.with_columns(
        [pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c) for c in floats]
    ).with_columns(
        evidence=pl.lit(report.evidence),
        suite=pl.when(pl.col("suite") == "").then(None).otherwise(pl.col("suite")),
        ci_recent=pl.when(pl.col("ci_low").is_not_null())
        .then(pl.concat_list("ci_low", "ci_high")),
    ).select(DRIFT_TEST_FIELDS)


def _tests_json(report: DriftReport | None) -> bytes:
    tests = drift_tests_frame(report) if report is not None else pl.DataFrame()
    return tests.write_json().encode() if tests.height else b"[]"


def drift_json_bytes(report: DriftReport, community: DriftReport | None = None) -> bytes:
    """``drift.json`` (a ``DriftPayload``): the project's tests, then the community's; the test
    lists are serialised by Polars straight from the frames, since a night can hold 100k tests
    (the tests check them against ``DriftTest``)."""
    payload = DriftPayload(
        generated_at=datetime.now(UTC), window=_window(report),
        config=DriftSettings.model_validate(report.config, from_attributes=True), tests=[],
        semantic=SemanticStatus.model_validate(report.semantic))
    head = dump_json(payload.model_dump(mode="json", exclude={"tests", "community_tests"}))
    return (head[:-1] + b',"tests":' + _tests_json(report)
            + b',"community_tests":' + _tests_json(community) + b"}")


def history_frames(daily: pl.DataFrame) -> pl.DataFrame:
    """Per model × evidence × day: rows, failed calls and the error rate, the refusal rate, pass
    rate, score mean, latency p50/p95, distinct outputs, mean output length, cost and
    day-over-day consistency."""
    if daily.is_empty():
        return pl.DataFrame()
    if "evidence" not in daily.columns:  # summaries from before the split
        daily = daily.with_columns(evidence=pl.lit(EVIDENCE_PROJECT))
    # Summaries from before the refusal count: no refusal rate rather than a wrong one.
    missing = [pl.lit(None, pl.Int64).alias(c) for c in ("errors", "answered", "refusals")
               if c not in daily.columns]
    if missing:
        daily = daily.with_columns(missing)
    keys = ["model_id", "evidence", "date"]
    per_day = daily.group_by(keys).agg(
        rows=pl.col("rows").sum(),
        errors=pl.col("errors").fill_null(0).sum(),
        answered=pl.col("answered").sum(),
        refusals=pl.col("refusals").sum(),
        counted=pl.col("refusals").is_not_null().all(),
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
        daily.select(*keys, "latency_values").explode("latency_values")
        .group_by(keys)
        .agg(latency_p50_ms=pl.col("latency_values").quantile(0.5, "linear"),
             latency_p95_ms=pl.col("latency_values").quantile(0.95, "linear"))
    )
    # A prompt of the project and the same prompt of the community are two prompts here.
    prompt = ["evidence", "model_id", "suite", "prompt_id"]
    consistency = daily_consistency(daily, ("model_id", "evidence"),
                                    prompt_changes(daily, prompt)).select(*keys, "consistency")
    return (
        per_day.join(latency, on=keys, how="left")
        .join(consistency, on=keys, how="left")
        .with_columns(
            pass_rate=pl.when(pl.col("scored") > 0).then(pl.col("passes") / pl.col("scored")),
            error_rate=pl.when(pl.col("rows") > 0).then(pl.col("errors") / pl.col("rows")),
            refusal_rate=pl.when(pl.col("counted") & (pl.col("answered") > 0))
            .then(pl.col("refusals") / pl.col("answered")),
            score_mean=pl.when(pl.col("score_n") > 0)
            .then(pl.col("score_sum") / pl.col("score_n")),
            output_len_mean=pl.when(pl.col("len_n") > 0)
            .then(pl.col("len_sum") / pl.col("len_n")),
        )
        .select("model_id", *HistoryDay.model_fields)
        .sort("model_id", "evidence", "date")
    )


def publish_history(store: ObjectStore, daily: pl.DataFrame) -> list[str]:
    """One ``model-history/{slug}.json`` per model (its project days and its community days);
    files of models no longer present, and every file under the old non-injective
    ``history/`` slugs, are removed. Returns the keys written."""
    frame = history_frames(daily)
    keys: list[str] = []
    if not frame.is_empty():
        for (model_id,), part in frame.partition_by("model_id", as_dict=True).items():
            try:
                key = history_key(str(model_id))
            except ValueError:
                # An id that cannot be a key (empty, or too long once encoded: the submit API
                # refuses those) must not cost the other models their history.
                logger.warning("no history file for model id %r: not a storable key", model_id)
                continue
            days = part.drop("model_id")
            store.put(key, dump_json(HistoryPayload.model_validate({
                "model_id": model_id,
                "days": days.filter(pl.col("evidence") == EVIDENCE_PROJECT).to_dicts(),
                "community_days": days.filter(pl.col("evidence") == EVIDENCE_COMMUNITY)
                .to_dicts()})))
            keys.append(key)
    written = set(keys)
    for prefix in (HISTORY_PREFIX, LEGACY_HISTORY_PREFIX):
        for obj in store.list(prefix):
            if obj.key not in written:
                store.delete(obj.key)
    return keys


def publish_evidence(
    store: ObjectStore, payloads: dict[str, ModelEvidencePayload]
) -> dict[str, str]:
    """One ``model-evidence/{slug}.json`` per model of ``payloads`` (before/after of a flagged
    model); the files of models no longer flagged are removed. Returns model id → key."""
    keys: dict[str, str] = {}
    for model_id, payload in sorted(payloads.items()):
        try:
            key = evidence_key(model_id)
        except ValueError:
            logger.warning("no evidence file for model id %r: not a storable key", model_id)
            continue
        store.put(key, dump_json(payload))
        keys[model_id] = key
    written = set(keys.values())
    for obj in store.list(EVIDENCE_PREFIX):
        if obj.key not in written:
            store.delete(obj.key)
    return keys


def publish_drift(
    store: ObjectStore, report: DriftReport, last_seen: dict[str, date],
    community: DriftReport | None = None, rules: EvidenceRules | None = None,
) -> dict[str, str]:
    """Write ``models.json`` and ``drift.json`` for the night's project ``report`` and, beside
    it, the ``community`` report."""
    store.put(latest_key(DRIFT), drift_json_bytes(report, community))
    models_key = put_json(store, MODELS, models_payload(report, last_seen, community, rules))
    return {"models": models_key, "drift": latest_key(DRIFT)}


def _fmt(value: Any, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


_VERDICT_ORDER = {"drifting": 0, "watch": 1, "insufficient_data": 2, "stable": 3}


def _verdict_rows(models: list[dict[str, Any]]) -> list[str]:
    return [
        f"| `{m['model_id']}` | **{m['verdict']}** | {_fmt(m['pass_rate_baseline'])} → "
        f"{_fmt(m['pass_rate_recent'])} | {_fmt(m['consistency'], '{:.0%}')} "
        f"({m['consistency_band'] or '–'}) | {m['rows_recent']}/{m['rows_baseline']} |"
        for m in sorted(models, key=lambda m: (_VERDICT_ORDER.get(m["verdict"], 9),
                                               m["model_id"]))
    ]


def render_report(
    report: DriftReport, models: list[dict[str, Any]] | None = None,
    community: DriftReport | None = None,
) -> str:
    """The night's drift report as markdown (the Prefect artifact): the project's verdicts, then
    the community's, labelled as such."""
    w = report.window
    models = models if models is not None else report.models
    counts: dict[str, int] = {}
    for m in models:
        counts[m["verdict"]] = counts.get(m["verdict"], 0) + 1
    header = ("| model | verdict | pass rate (baseline → recent) | consistency "
              "| rows (recent/baseline) |\n| --- | --- | --- | --- | --- |")
    lines = [
        f"# Plumbline drift report — {w.as_of.isoformat()}",
        "",
        f"Recent window {w.recent_start} → {w.as_of} ({w.recent_days} days) against the "
        f"baseline {w.baseline_start} → {w.baseline_end} ({w.baseline_days} days). "
        f"{report.tests.height} tests, Benjamini–Hochberg at α = {report.config.alpha}.",
        "",
        "Verdicts from the project's own runs (scheduled and on-demand): "
        + (", ".join(f"{v} {n}" for v, n in sorted(counts.items())) or "none"),
        "",
        header,
        *_verdict_rows(models),
    ]
    flagged = [m for m in models if m.get("reasons") and m["verdict"] != "stable"]
    if flagged:
        lines += ["", "## Why"]
        for m in flagged:
            lines.append(f"- `{m['model_id']}` ({m['verdict']}):")
            lines += [f"  - {r}" for r in m["reasons"]]
            if m.get("evidence_url"):
                lines.append(f"  - before and after: [{m['evidence_url']}]({m['evidence_url']})")
    degraded = [m for m in models if (m.get("availability") or {}).get("status") == "degraded"]
    if degraded:
        lines += ["", "## Availability",
                  "", "Error rates that rose (not part of the verdicts above: failed calls say "
                  "nothing about answers):"]
        for m in degraded:
            a = m["availability"]
            top = f"; most common error: {a['top_error']}" if a["top_error"] else ""
            lines.append(f"- `{m['model_id']}`: error rate "
                         f"{_fmt(a['error_rate_baseline'], '{:.1%}')} → "
                         f"{_fmt(a['error_rate_recent'], '{:.1%}')}{top}")
    if report.semantic.get("status") == "skipped":
        lines += ["", f"Meaning drift (semantic) skipped: {report.semantic.get('reason')}."]
    if community is not None and community.models:
        lines += ["", "## Community evidence",
                  "",
                  "Verdicts from community submissions alone (their own tests, each contributor "
                  "capped per model and day); not part of the verdicts above, never notified.",
                  "", header, *_verdict_rows(community.models)]
    return "\n".join(lines) + "\n"
