"""The ``nightly`` flow: compact → aggregate → drift → evidence → publish, each a Prefect task.

Only days whose raw data changed since the last night (or that a GDPR operation marked dirty)
are compacted and re-aggregated, in batches of days. The batches run as tasks of this flow run,
in its process, unless there are enough of them to pay for spreading: on a work pool with two
or more online workers and at least ``2 × MIN_PART_DAYS`` days to aggregate (a rebuild, a
backfill), or when ``workers`` asks for it, each batch becomes a child flow run of the
``nightly-batch`` deployment, which the pool's workers pick up (``flows/spread.py``); the
parent waits for them, then records what was aggregated and goes on.

The drift stage first embeds the window's new distinct outputs (meaning drift; skipped without
the ``embeddings`` extra), then is one vectorised task over the windows, run once per kind of
evidence (the project's runs give the verdicts; community submissions get their own, labelled);
the evidence stage dates each flagged project model's change and publishes its before/after
answers; publishing writes ``summaries/latest/`` and, when a model's project verdict drifts or
its availability degrades, emits a Prefect event, calls the optional webhook and leaves a
markdown report as an artifact.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import polars as pl
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.base import flow
from flows.compaction import compact_day_task
from flows.spread import fan_out, run_parts, where
from tasks.drift.config import EVIDENCE_PROJECT, DriftConfig, Window
from tasks.drift.report import DriftReport, EvidenceReports, compute_reports
from tasks.errors import PlumblineError
from tasks.settings import Settings
from tasks.storage import ObjectStore, open_store
from tasks.storage.layout import day_prefix
from tasks.summaries.aggregate import (
    AggregationPlan,
    aggregate_days,
    batches,
    commit,
    even_batches,
    last_day_of,
    plan,
    raw_fingerprints,
    read_daily,
    summary_days,
)
from tasks.summaries.beforeafter import DEFAULT_MAX_PROMPTS, night_evidence
from tasks.summaries.embedding import semantic_input
from tasks.summaries.evidence import EvidenceRules
from tasks.summaries.notify import notify_availability, notify_drift
from tasks.summaries.payloads import ProviderCalls
from tasks.summaries.publish import (
    HISTORY_COLUMNS,
    publish_chart,
    publish_drift,
    publish_history,
    publish_status,
    render_report,
)

# Days of history published per model (the chart always covers every day).
HISTORY_DAYS = 90
# A day of raw data aggregates in well under a second (docs/benchmarks.md: 90 days of 110,000
# rows in 6 s), a child run costs seconds to start (docs/deploy.md): a part is worth a child run
# only with at least this many days, so a usual night (a day or two) never spreads.
MIN_PART_DAYS = 30
NIGHTLY_BATCH_DEPLOYMENT = "nightly-batch/nightly-batch"


@task(name="aggregate-days", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def aggregate_days_task(
    store: ObjectStore, days: list[date], rules: EvidenceRules
) -> dict[date, int]:
    return aggregate_days(store, days, rules)


@task(name="drift", cache_policy=NO_CACHE)
def drift_task(
    store: ObjectStore, as_of: date | None, config: DriftConfig
) -> EvidenceReports | None:
    days = summary_days(store)
    if not days:
        return None
    # The windows end on the project's last day: a community row dated later (the API takes
    # timestamps up to a day ahead) must not empty the project's recent window.
    end = as_of or last_day_of(store, EVIDENCE_PROJECT) or days[-1]
    window = Window.ending(end, config)
    daily = read_daily(store, window.days())
    # Meaning drift: only outputs not yet in the embedding cache are embedded; without the
    # `embeddings` extra the metric is skipped and drift.json says why.
    return compute_reports(daily, end, config, semantic_input(store, daily, window))


@task(name="evidence", cache_policy=NO_CACHE)
def evidence_task(
    store: ObjectStore, reports: EvidenceReports, max_prompts: int
) -> EvidenceReports:
    """Date each flagged project model's change and publish its before/after answers; the
    project report comes back with ``change_point`` and ``evidence_url`` on its verdicts."""
    night = night_evidence(store, reports.project, max_prompts)
    get_run_logger().info("evidence: before/after for %d model(s), change points for %d",
                          len(night.published), len(night.change_points))
    return replace(reports, project=night.report)


@task(name="publish", cache_policy=NO_CACHE)
def publish_task(
    store: ObjectStore, reports: EvidenceReports | None, rules: EvidenceRules
) -> dict[str, Any]:
    chart_rows = read_daily(store, columns=["date", "model_id", "rows"])
    published = {"chart": publish_chart(store, chart_rows)}
    if reports is None:
        return published
    report = reports.project
    last_seen: dict[str, date] = {}
    if not chart_rows.is_empty():
        for model_id, seen in chart_rows.group_by("model_id").agg(
                last=pl.col("date").max()).iter_rows():
            last_seen[model_id] = seen
    published.update(publish_drift(store, report, last_seen, reports.community, rules))
    # As models.json counts them: a model seen only before the windows is insufficient_data.
    verdicts = {m["model_id"]: m["verdict"] for m in report.models}
    counts: dict[str, int] = {}
    for model_id in set(last_seen) | set(verdicts):
        verdict = verdicts.get(model_id, "insufficient_data")
        counts[verdict] = counts.get(verdict, 0) + 1
    published["verdict_counts"] = dict(sorted(counts.items()))
    recent_days = [d for d in summary_days(store) if (report.window.as_of - d).days < HISTORY_DAYS]
    history = publish_history(store, read_daily(store, recent_days, columns=HISTORY_COLUMNS))
    published["history"] = f"{len(history)} file(s)"
    create_markdown_artifact(markdown=render_report(report, community=reports.community),
                             key="drift-report",
                             description=f"Plumbline drift report for {report.window.as_of}")
    return published


def night_counts(
    daily: pl.DataFrame, aggregated: list[date], recent: list[date]
) -> dict[str, Any]:
    """What the night counted, for ``nightly.json``: raw rows in the re-aggregated days, and per
    provider the rows and failed calls of the project's own runs in the recent window (``daily``:
    the daily summaries' ``date``, ``evidence``, ``model_id``, ``rows`` and ``errors``)."""
    if daily.is_empty():
        return {"rows_aggregated": 0, "provider_calls": {}}
    rows_aggregated = daily.filter(pl.col("date").is_in(aggregated))["rows"].sum()
    calls = daily.filter(pl.col("date").is_in(recent))
    if "evidence" in calls.columns:
        # The provider error rate an alert watches is the project's own calls, not what the
        # community submitted about a provider.
        calls = calls.filter(pl.col("evidence") == EVIDENCE_PROJECT)
    per_provider = (
        calls
        .group_by(provider=pl.col("model_id").str.split("/").list.first())
        .agg(rows=pl.col("rows").sum(), errors=pl.col("errors").sum())
        .sort("provider")
    )
    return {
        "rows_aggregated": int(rows_aggregated or 0),
        "provider_calls": {
            str(p): ProviderCalls(rows=int(r or 0), errors=int(e or 0))
            for p, r, e in per_provider.iter_rows()
        },
    }


@task(name="count", cache_policy=NO_CACHE)
def count_task(
    store: ObjectStore, aggregated: list[date], report: DriftReport | None
) -> dict[str, Any]:
    recent: list[date] = []
    if report is not None:
        w = report.window
        recent = [w.recent_start + timedelta(days=i) for i in range(w.recent_days)]
    daily = read_daily(store, sorted(set(aggregated) | set(recent)),
                       columns=["date", "evidence", "model_id", "rows", "errors"])
    return night_counts(daily, aggregated, recent)


@task(name="notify", cache_policy=NO_CACHE)
def notify_task(reports: EvidenceReports, webhook_url: str | None) -> dict[str, Any]:
    # The project's verdicts only: community evidence is published, labelled, never alarmed on.
    report = reports.project
    window = report.window.to_json()
    return {**notify_drift(report.models, window, webhook_url),
            "availability": notify_availability(report.models, window, webhook_url)}


def _compact_and_aggregate(
    store: ObjectStore, todo: AggregationPlan, rules: EvidenceRules, workers: int | None = None
) -> dict[date, int]:
    parts, target = fan_out(workers, deployment=NIGHTLY_BATCH_DEPLOYMENT, units=len(todo.days),
                            min_units=MIN_PART_DAYS)
    if target is not None:
        work = even_batches(todo.days, parts)
        get_run_logger().info("nightly: %d day(s) spread over %d child run(s) of %s",
                              len(todo.days), len(work), target.name)
        run_parts(target, f"nightly {todo.days[0]}..{todo.days[-1]}",
                  [{"days": [d.isoformat() for d in b]} for b in work], [len(b) for b in work],
                  key=f"nightly:{flow_run.get_id()}")
        # The children wrote the summaries: count them from the store.
        counted = read_daily(store, todo.days, columns=["date"])
        written = {d: 0 for d in todo.days}
        written.update(dict(counted.group_by("date").len().iter_rows()))
    else:
        written = _compact_and_aggregate_here(store, todo.days, set(todo.fingerprints), rules)
    # Compaction renamed files: the manifest records the listing the aggregation actually read.
    commit(store, todo, raw_fingerprints(store), rules)
    return written


def _compact_and_aggregate_here(
    store: ObjectStore, days: list[date], present: set[date], rules: EvidenceRules
) -> dict[date, int]:
    """Compact and aggregate ``days`` as tasks of this flow run (one per day, one per batch)."""
    for fut in [compact_day_task.submit(store, d) for d in days if d in present]:
        fut.result()
    written: dict[date, int] = {}
    for fut in [aggregate_days_task.submit(store, b, rules) for b in batches(days)]:
        written.update(fut.result())
    return written


def execute(
    store: ObjectStore,
    *,
    recent_days: int = 7,
    baseline_days: int = 28,
    as_of: date | None = None,
    webhook_url: str | None = None,
    rules: EvidenceRules | None = None,
    evidence_max_prompts: int = DEFAULT_MAX_PROMPTS,
    workers: int | None = None,
) -> dict[str, Any]:
    """The flow's body, given its store (tests call it inside a flow of their own)."""
    logger = get_run_logger()
    rules = rules or EvidenceRules()
    todo = plan(store, rules)
    logger.info("nightly: %d raw day(s) in %s; %d to aggregate (%d changed, %d dirty, %d gone)",
                len(todo.fingerprints), store.describe(), len(todo.days), len(todo.changed),
                len(todo.dirty), len(todo.removed))
    written = _compact_and_aggregate(store, todo, rules, workers)
    config = DriftConfig(recent_days=recent_days, baseline_days=baseline_days)
    reports = drift_task(store, as_of, config)
    if reports is not None:
        reports = evidence_task(store, reports, evidence_max_prompts)
    published = publish_task(store, reports, rules)
    verdicts: dict[str, str] = {}
    community: dict[str, str] = {}
    notified: dict[str, Any] = {}
    if reports is not None:
        verdicts = {m["model_id"]: m["verdict"] for m in reports.project.models}
        community = {m["model_id"]: m["verdict"] for m in reports.community.models}
        notified = notify_task(reports, webhook_url)
        logger.info("nightly: %d tests; verdicts %s; community evidence %s",
                    reports.project.tests.height, verdicts, community or "none")
    counts = count_task(store, todo.days, reports.project if reports else None)
    status = publish_status(
        store, days=len(todo.fingerprints), aggregated_days=len(todo.days),
        summary_rows=sum(written.values()),
        as_of=reports.project.window.as_of.isoformat() if reports else None,
        drifting=[m for m, v in verdicts.items() if v == "drifting"],
        community_drifting=[m for m, v in community.items() if v == "drifting"],
        degraded=[m["model_id"] for m in reports.project.degraded] if reports else [],
        tests=reports.project.tests.height if reports else 0,
        verdicts=published.get("verdict_counts", {}),
        **counts,
    )
    return {"days": len(todo.fingerprints), "aggregated_days": len(todo.days),
            "summary_rows": sum(written.values()), "verdicts": verdicts,
            "community_verdicts": community, "notified": notified, **published,
            "status": status}


@flow(name="nightly", log_prints=True)
def nightly(
    recent_days: int | None = None, baseline_days: int | None = None, as_of: date | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Compact, aggregate, test for drift and publish the summaries the API serves.

    ``recent_days`` / ``baseline_days`` default to the settings (7 and 28 days); ``as_of`` to
    the latest day with data; ``workers``: how many ``nightly-batch`` child runs to spread the
    days to aggregate over (1: none; empty: automatic, see the module docstring).
    """
    settings = Settings()
    return execute(
        open_store(settings),
        recent_days=recent_days or settings.drift_recent_days,
        baseline_days=baseline_days or settings.drift_baseline_days,
        as_of=as_of,
        webhook_url=settings.drift_webhook_url,
        rules=EvidenceRules.from_settings(settings),
        evidence_max_prompts=settings.evidence_max_prompts,
        workers=workers,
    )


@flow(name="nightly-batch", log_prints=True)
def nightly_batch(days: list[date]) -> dict[str, int]:
    """Compact and aggregate some days: one part of a nightly spread over workers.

    Started by the ``nightly`` flow (never on a schedule); the nightly records the aggregation
    and publishes once every part is done.
    """
    if not days or len(days) > 366:
        raise PlumblineError(f"nightly-batch takes 1 to 366 days, got {len(days)}")
    settings = Settings()
    store = open_store(settings)
    rules = EvidenceRules.from_settings(settings)
    present = {d for d in days if next(iter(store.list(day_prefix(d))), None) is not None}
    written = _compact_and_aggregate_here(store, sorted(set(days)), present, rules)
    get_run_logger().info("nightly-batch: %d day(s), %d summary row(s), on %s", len(days),
                          sum(written.values()), where())
    return {d.isoformat(): n for d, n in written.items()}


if __name__ == "__main__":
    nightly()
