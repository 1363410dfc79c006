"""Before and after: what a flagged model's answers looked like in the baseline and look like now.

For every model whose project verdict is ``watch`` or ``drifting``, the night picks the prompts
with the strongest evidence (smallest adjusted p-value among the model's prompt-level tests, at
most ``EVIDENCE_MAX_PROMPTS``), reads only those prompts' raw rows of the window's days, and keeps
per prompt and window the most common output (with its latest row's pass result, score, latency
and day, and how often it was seen) plus a word-level diff. It also dates each flagged model's
change (``tasks.drift.changepoint``) from its daily history.

Not to be confused with ``tasks.summaries.evidence``, which decides which rows count as the
project's or the community's evidence. Before/after is built from the project's rows only:
community rows are other people's outputs, and the verdict it explains is the project's.
"""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import polars as pl

from tasks.drift.changepoint import ChangePoint, change_points, with_change_point
from tasks.drift.config import EVIDENCE_PROJECT, Window
from tasks.drift.report import DriftReport
from tasks.drift.verdicts import DRIFTING, WATCH
from tasks.records.io import empty_table
from tasks.records.live import range_keys
from tasks.storage.base import ObjectStore
from tasks.summaries.aggregate import read_daily
from tasks.summaries.evidence import PROJECT_SOURCES, EvidenceRules, split_keys
from tasks.summaries.payloads import DriftWindow, ModelEvidencePayload
from tasks.summaries.publish import HISTORY_COLUMNS, history_frames, publish_evidence

FLAGGED = (WATCH, DRIFTING)
DEFAULT_MAX_PROMPTS = 5
# An answer is shown up to this many characters: a file per model stays small (≤ ~50 kB at five
# prompts) and the diff's cost bounded, however long a model's outputs.
MAX_OUTPUT_CHARS = 4000
TRUNCATION_MARKER = " … [truncated: {total} characters in all]"

# The raw columns read (never metadata, tokens or the rest of the record).
RAW_COLUMNS = ["model_id", "suite", "prompt_id", "output", "passed", "score", "latency_ms",
               "error", "source", "year", "month", "day", "timestamp", "id"]
PROMPT_KEYS = ["model_id", "suite", "prompt_id"]
# A "word" keeps the whitespace after it, so the runs of a diff spell the texts exactly.
_WORD_RE = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True)
class Pick:
    """A prompt chosen for before/after, and the test that chose it."""

    model_id: str
    suite: str
    prompt_id: str
    metric: str
    p_adjusted: float | None


def pick_prompts(tests: pl.DataFrame, model_ids: Iterable[str], limit: int) -> list[Pick]:
    """Per model, its prompts with the smallest adjusted p-value (over every prompt-level test of
    the model; a prompt once, by its strongest test), at most ``limit`` each."""
    models = list(model_ids)
    if limit < 1 or not models or tests.is_empty():
        return []
    prompt_tests = (
        tests.filter((pl.col("level") == "prompt") & pl.col("model_id").is_in(models)
                     & pl.col("p_adjusted").is_not_null())
        .with_columns(suite=pl.col("suite").fill_null(""))
        .sort("model_id", "p_adjusted", "p_value", "suite", "prompt_id", "metric",
              nulls_last=True)
    )
    best = prompt_tests.unique(PROMPT_KEYS, keep="first", maintain_order=True)
    top = best.filter(pl.int_range(pl.len()).over("model_id") < limit)
    return [Pick(r["model_id"], r["suite"], r["prompt_id"], r["metric"], r["p_adjusted"])
            for r in top.iter_rows(named=True)]


def truncate(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """``text``, or its first ``limit`` characters and a marker giving its full length."""
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER.format(total=len(text))


def word_diff(before: str, after: str) -> list[dict[str, str]]:
    """A word-level diff (difflib over words): runs of ``equal``, ``delete`` and ``insert``;
    the equal and deleted runs spell ``before``, the equal and inserted runs ``after``."""
    a, b = _WORD_RE.findall(before), _WORD_RE.findall(after)
    # autojunk off: it would treat frequent words ("the") as junk and give a ragged diff.
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    ops: list[dict[str, str]] = []

    def add(op: str, words: list[str]) -> None:
        if not words:
            return
        if ops and ops[-1]["op"] == op:
            ops[-1]["text"] += "".join(words)
        else:
            ops.append({"op": op, "text": "".join(words)})

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            add("equal", a[i1:i2])
        else:  # replace = delete, then insert
            add("delete", a[i1:i2])
            add("insert", b[j1:j2])
    return ops


def evidence_scan(store: ObjectStore, keys: Sequence[str], picks: Sequence[Pick],
                  window: Window) -> pl.LazyFrame:
    """The picked prompts' answered project rows of the window, lazily: the column selection and
    the model/prompt/day predicates go into the Parquet scan, so only those columns are decoded
    and row groups whose statistics rule them out are skipped. On a local store one scan over
    the files; on a remote one each file is downloaded and filtered in turn (memory holds one
    file and the rows kept, never the window)."""
    paths = [store.local_path(k) for k in keys]
    if keys and all(p is not None and p.is_file() for p in paths):
        return _picked(_scan([str(p) for p in paths]), picks, window)
    kept = []
    for key in keys:
        try:
            data = store.get(key)
        except KeyError:
            continue  # merged by a compaction since it was listed: its rows are in the new file
        kept.append(_picked(_scan(io.BytesIO(data)), picks, window).collect())
    if not kept:
        return _picked(_scan_empty(), picks, window)
    return pl.concat(kept, how="vertical_relaxed").lazy()


def _scan(source: list[str] | io.BytesIO) -> pl.LazyFrame:
    # The partition columns are stored in the files too (no hive parsing); files written before
    # a column existed get it as nulls, as the aggregation reads them (aggregate.scan_keys).
    return pl.scan_parquet(
        source, hive_partitioning=False, missing_columns="insert", extra_columns="ignore",
        cast_options=pl.ScanCastOptions(integer_cast="upcast"),
    ).select(RAW_COLUMNS)


def _scan_empty() -> pl.LazyFrame:
    return pl.from_arrow(empty_table(RAW_COLUMNS)).lazy()  # type: ignore[union-attr]


def _picked(raw: pl.LazyFrame, picks: Sequence[Pick], window: Window) -> pl.LazyFrame:
    day = pl.date(pl.col("year"), pl.col("month"), pl.col("day"))
    # The partition columns as one integer (20261130): unlike a built date, a plain comparison
    # on them goes into the scan (the keys are the window's days already; this is the guard).
    yyyymmdd = pl.col("year") * 10_000 + pl.col("month") * 100 + pl.col("day")
    wanted = (
        pl.col("model_id").is_in(sorted({p.model_id for p in picks}))
        & pl.col("prompt_id").is_in(sorted({p.prompt_id for p in picks}))
        & yyyymmdd.is_between(_yyyymmdd(window.baseline_start), _yyyymmdd(window.as_of))
        & pl.col("error").is_null() & pl.col("output").is_not_null()
        & pl.col("source").is_in(PROJECT_SOURCES)
    )
    exact = pl.DataFrame([(p.model_id, p.suite, p.prompt_id) for p in picks],
                         schema=PROMPT_KEYS, orient="row").lazy()
    return (
        raw.filter(wanted)
        .with_columns(suite=pl.col("suite").fill_null(""), date=day,
                      recent=day >= window.recent_start)
        # The model and prompt filters above are per column; this keeps only the exact picks.
        .join(exact, on=PROMPT_KEYS, how="semi")
    )


def _yyyymmdd(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def most_common_answers(rows: pl.DataFrame) -> pl.DataFrame:
    """Per prompt and window (``recent``): the most common output (ties: the most recently seen),
    with ``count`` and its latest row's pass result, score, latency and day."""
    keys = [*PROMPT_KEYS, "recent"]
    latest = (
        rows.sort("timestamp", "id", descending=True)
        .group_by(*keys, "output", maintain_order=True)
        .agg(count=pl.len(), passed=pl.first("passed"), score=pl.first("score"),
             latency_ms=pl.first("latency_ms"), date=pl.first("date"),
             seen=pl.first("timestamp"))
    )
    return (
        latest.sort("count", "seen", "output", descending=[True, True, False])
        .group_by(keys, maintain_order=True).first()
        .drop("seen")
    )


def _answer(row: dict[str, Any]) -> dict[str, Any]:
    return {"output": truncate(row["output"]), "passed": row["passed"], "score": row["score"],
            "latency_ms": row["latency_ms"], "date": row["date"], "count": int(row["count"])}


def build_evidence(
    store: ObjectStore, report: DriftReport, limit: int = DEFAULT_MAX_PROMPTS,
    model_ids: Iterable[str] | None = None,
) -> dict[str, ModelEvidencePayload]:
    """Before/after per model of ``model_ids`` (default: the report's ``watch`` and
    ``drifting`` models) with at least one picked prompt answered in both windows."""
    if model_ids is None:
        model_ids = [m["model_id"] for m in report.models if m["verdict"] in FLAGGED]
    picks = pick_prompts(report.tests, model_ids, limit)
    if not picks:
        return {}
    w = report.window
    keys, _ = split_keys(range_keys(store, w.baseline_start, w.as_of), EvidenceRules())
    if not keys:
        return {}
    answers = most_common_answers(evidence_scan(store, keys, picks, w).collect())
    by_prompt = {(r["model_id"], r["suite"], r["prompt_id"], r["recent"]): r
                 for r in answers.iter_rows(named=True)}
    window = DriftWindow.model_validate(w, from_attributes=True)
    now = datetime.now(UTC)
    prompts: dict[str, list[dict[str, Any]]] = {}
    for p in picks:
        baseline = by_prompt.get((p.model_id, p.suite, p.prompt_id, False))
        recent = by_prompt.get((p.model_id, p.suite, p.prompt_id, True))
        if baseline is None or recent is None:
            continue  # not answered in one window (an outage): nothing to compare
        before, after = _answer(baseline), _answer(recent)
        prompts.setdefault(p.model_id, []).append({
            "prompt_id": p.prompt_id, "suite": p.suite or None, "metric": p.metric,
            "p_adjusted": p.p_adjusted, "baseline": before, "recent": after,
            "diff": word_diff(before["output"], after["output"])})
    return {m: ModelEvidencePayload.model_validate({
        "model_id": m, "generated_at": now, "window": window, "prompts": items})
        for m, items in prompts.items()}


def evidence_path(model_id: str) -> str:
    """The API route serving a model's before/after (``/api/models/{model_id}/evidence``)."""
    return f"/api/models/{quote(model_id, safe='/')}/evidence"


@dataclass(frozen=True)
class NightEvidence:
    """The project report with each flagged model's ``change_point`` and ``evidence_url`` (and
    the reason saying when it started), and what was published."""

    report: DriftReport
    published: dict[str, str]
    change_points: dict[str, ChangePoint]


def window_history(store: ObjectStore, window: Window, model_ids: Sequence[str]) -> pl.DataFrame:
    """The daily history (``history_frames``) of the project's rows of ``model_ids`` over the
    window's days."""
    if not model_ids:
        return pl.DataFrame()
    daily = read_daily(store, window.days(), columns=HISTORY_COLUMNS)
    if daily.is_empty():
        return daily
    daily = daily.filter(pl.col("model_id").is_in(list(model_ids)))
    if "evidence" in daily.columns:
        daily = daily.filter(pl.col("evidence") == EVIDENCE_PROJECT)
    return history_frames(daily)


def night_evidence(store: ObjectStore, report: DriftReport,
                   limit: int = DEFAULT_MAX_PROMPTS) -> NightEvidence:
    """The nightly's evidence stage: date each flagged model's change, publish its before/after
    (removing the files of models no longer flagged), and annotate the verdicts with both."""
    flagged = [m["model_id"] for m in report.models if m["verdict"] in FLAGGED]
    w = report.window
    points = change_points(report.tests, flagged, window_history(store, w, flagged),
                           w.baseline_start, w.as_of)
    published = publish_evidence(store, build_evidence(store, report, limit, flagged))
    models = []
    for m in report.models:
        model = with_change_point(m, points.get(m["model_id"]))
        model["evidence_url"] = (evidence_path(m["model_id"]) if m["model_id"] in published
                                 else None)
        models.append(model)
    return NightEvidence(replace(report, models=models), published, points)
