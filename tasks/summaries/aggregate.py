"""Daily aggregation with Polars: raw rows → one summary row per day × evidence × model × suite ×
prompt.

Evidence (``project`` or ``community``) is kept apart from the start: each kind has its own
summary rows, and which rows count as which is ``tasks.summaries.evidence``'s rule (a project
cell once, a community contributor capped per model and day, anonymous rows only when allowed).

Incremental: a small manifest (``state/aggregate_manifest.json``) fingerprints each day's raw
listing (keys and sizes); a night re-aggregates only the days whose fingerprint changed, the days
a GDPR operation marked dirty, and the days whose raw data disappeared. Besides the usual
aggregates, each summary row keeps the group's per-row latency, score and output length values
and its set of output hashes: the drift tests (Mann–Whitney U, day-over-day consistency) need
distributions, not means — see docs/drift.md for why lists beat histograms here. It also counts
the availability and refusal figures: failed calls and their most common message, and answered
rows that are refusals (``tasks.refusal``, applied to the head of every answered output).

Longer than 400 lines: the aggregation and its incremental plan (manifest, fingerprints) change
together whenever a summary column is added, so they stay in one module.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from tasks.drift.config import EVIDENCE_COMMUNITY, EVIDENCE_PROJECT
from tasks.records.io import read_records
from tasks.records.live import live_keys
from tasks.refusal import DETECTOR_VERSION, HEAD_CHARS, REFUSAL_PATTERN
from tasks.storage.base import ObjectInfo, ObjectStore
from tasks.storage.layout import (
    AGGREGATE_MANIFEST_KEY,
    DAILY,
    DIRTY_PREFIX,
    RAW,
    daily_summary_key,
    day_of_key,
    day_prefix,
    dirty_marker_key,
)
from tasks.summaries.evidence import (
    EvidenceRules,
    community_rows,
    one_row_per_cell,
    project_rows,
    split_keys,
)

# The raw columns aggregation reads. `output` is read only for its first `HEAD_CHARS` characters
# (the refusal detector's input), cut as it is scanned so whole outputs never reach the group-by.
# Polars reads only those a query uses: `timestamp` and `id` only to order the rare rows of a
# capped contributor or a duplicated cell.
AGG_INPUT_COLUMNS = [
    "model_id", "suite", "prompt_id", "passed", "score", "latency_ms", "input_tokens",
    "output_tokens", "cost_usd", "output_hash", "output_len", "error", "year", "month", "day",
    "source", "user_id", "run_id", "sample_idx", "timestamp", "id", "output",
]
# The longest error message a summary keeps (``top_error``): enough to recognise it.
ERROR_CHARS = 200

GROUP_KEYS = ["date", "evidence", "model_id", "suite", "prompt_id"]
# What one kind of evidence is grouped by (its rows are aggregated apart, then labelled).
ROW_KEYS = ["date", "model_id", "suite", "prompt_id"]

# Per-row value lists kept in each summary row for the distribution tests.
VALUE_LIST_COLUMNS = ["latency_values", "score_values", "output_len_values", "output_hashes"]

# 2: summaries gained the evidence dimension and count a project cell once; a manifest of
# version 1 (or of other evidence rules) means a full rebuild.
# 3: summaries gained answered, refusals, top_error and top_error_count (availability and
# refusal rate); the refusal detector's version is part of the manifest too.
MANIFEST_VERSION = 3

# Days aggregated per Polars query: one scan over a few days amortises the query setup, and
# bounding it keeps memory flat however long the history (a 90-day rebuild never holds 90 days).
DEFAULT_DAYS_PER_BATCH = 10


def _input_columns() -> list[pl.Expr]:
    return [pl.col(c).str.slice(0, HEAD_CHARS) if c == "output" else pl.col(c)
            for c in AGG_INPUT_COLUMNS]


def scan_keys(store: ObjectStore, keys: list[str]) -> pl.LazyFrame:
    """A lazy frame over raw files: scanned in place on a local store, downloaded otherwise."""
    paths = [store.local_path(k) for k in keys]
    if keys and all(p is not None and p.is_file() for p in paths):
        # The partition columns are stored in the files too, so the hive path is not parsed;
        # files written before a column existed get it as nulls instead of failing the night.
        return pl.scan_parquet(
            [str(p) for p in paths], hive_partitioning=False, missing_columns="insert",
            extra_columns="ignore", cast_options=pl.ScanCastOptions(integer_cast="upcast"),
        ).select(_input_columns())
    table = read_records(store, keys).select(AGG_INPUT_COLUMNS)
    return pl.from_arrow(table).lazy().select(_input_columns())  # type: ignore[union-attr]


def aggregate_frame(rows: pl.LazyFrame) -> pl.LazyFrame:
    """The per day × model × suite × prompt summary of one kind of evidence's rows
    (``evidence.project_rows`` / ``community_rows``), with ``cells``: the distinct (run, sample)
    tags of each group, fewer than ``rows`` only when a cell may have been written twice."""
    answered = pl.col("error").is_null()
    latency = pl.col("latency_ms").filter(answered & pl.col("latency_ms").is_not_null())
    # A refusal is an answered row whose output opens by declining (tasks/refusal.py); the scan
    # already cut `output` to the detector's head.
    refusal = answered & pl.col("output").str.contains(REFUSAL_PATTERN).fill_null(False)
    failed = pl.col("error").filter(~answered).str.slice(0, ERROR_CHARS)
    return (
        rows.group_by(ROW_KEYS)
        .agg(
            rows=pl.len().cast(pl.Int64),
            cells=pl.col("cell").n_unique().cast(pl.Int64),
            errors=(~answered).sum().cast(pl.Int64),
            answered=answered.sum().cast(pl.Int64),
            refusals=refusal.sum().cast(pl.Int64),
            # The group's most common error message and its count: a model's top error over a
            # window is the message with the largest summed count (docs/drift.md).
            top_error=failed.value_counts(sort=True, name="n").first(),
            scored=pl.col("passed").is_not_null().sum().cast(pl.Int64),
            passes=pl.col("passed").cast(pl.Int64).sum(),
            score_mean=pl.col("score").mean(),
            latency_p50_ms=latency.quantile(0.5, "linear"),
            latency_p95_ms=latency.quantile(0.95, "linear"),
            input_tokens=pl.col("input_tokens").sum(),
            output_tokens=pl.col("output_tokens").sum(),
            # Unknown prices stay unknown: a sum with any null cost is null, not an undercount.
            cost_usd=pl.when(pl.col("cost_usd").is_null().any()).then(None)
            .otherwise(pl.col("cost_usd").sum()),
            output_len_mean=pl.col("output_len").filter(answered).mean(),
            latency_values=latency.cast(pl.Float64),
            score_values=pl.col("score").drop_nulls().cast(pl.Float64),
            output_len_values=pl.col("output_len").filter(answered).drop_nulls().cast(pl.Int32),
            output_hashes=pl.col("output_hash").filter(answered).unique().sort(),
        )
        .with_columns(
            # Counted from the set kept anyway: a second distinct pass over the hashes is the
            # most expensive aggregate of the night.
            distinct_outputs=pl.col("output_hashes").list.len().cast(pl.Int64),
            top_error_count=pl.col("top_error").struct.field("n").cast(pl.Int64),
            top_error=pl.col("top_error").struct.field("error"),
            pass_rate=pl.when(pl.col("scored") > 0)
            .then(pl.col("passes") / pl.col("scored"))
            .otherwise(None)
        )
        .sort(ROW_KEYS)
    )


def counted_rows(
    store: ObjectStore, keys: list[str], rules: EvidenceRules
) -> tuple[pl.LazyFrame | None, pl.LazyFrame | None]:
    """The labelled project rows and counted community rows of raw files (None: no such files)."""
    ours, theirs = split_keys(keys, rules)
    project = project_rows(scan_keys(store, ours)) if ours else None
    community = community_rows(scan_keys(store, theirs), rules) if theirs else None
    return project, community


def summarize(
    store: ObjectStore, keys: list[str], rules: EvidenceRules | None = None
) -> pl.DataFrame:
    """The summary rows of raw files (every day in them): the project's, each cell counted once,
    then the community's, each labelled with its ``evidence``."""
    project, community = counted_rows(store, keys, rules or EvidenceRules())
    parts = []
    if project is not None:
        # The streaming engine runs the group-by in parallel morsels with bounded memory; on a
        # 10 M-row history it is ~2x faster than the in-memory engine
        # (tests/bench/bench_nightly.py).
        summary = aggregate_frame(project).collect(engine="streaming")
        # De-duplicating every cell up front would cost a group-by over all rows (~25 % of the
        # night); counting tags per group costs ~5 %, and only the groups it flags (normally
        # none) are aggregated again, exactly.
        flagged = summary.filter(pl.col("cells") < pl.col("rows")).select(ROW_KEYS)
        if flagged.height:
            suspects = project.join(flagged.lazy(), on=ROW_KEYS, how="semi")
            fixed = aggregate_frame(one_row_per_cell(suspects)).collect()
            summary = pl.concat([summary.join(flagged, on=ROW_KEYS, how="anti"), fixed]) \
                .sort(ROW_KEYS)
        parts.append(summary.with_columns(evidence=pl.lit(EVIDENCE_PROJECT)))
    if community is not None:
        summary = aggregate_frame(community).collect(engine="streaming")
        parts.append(summary.with_columns(evidence=pl.lit(EVIDENCE_COMMUNITY)))
    if not parts:
        return pl.DataFrame()
    summary = pl.concat(parts, how="vertical_relaxed")
    return summary.select(*GROUP_KEYS, *(c for c in summary.columns
                                         if c not in GROUP_KEYS and c != "cells"))


def _write_summary(store: ObjectStore, day: date, summary: pl.DataFrame) -> None:
    buf = io.BytesIO()
    # Summaries are rewritten whenever their day changes: the fastest ZSTD level, not raw's 9.
    summary.write_parquet(buf, compression="zstd", compression_level=1)
    store.put(daily_summary_key(day), buf.getvalue())


def _day_keys(store: ObjectStore, day: date) -> list[str]:
    # One listing: files a crashed compaction already merged are left out, so no row counts twice.
    return live_keys(store, day_prefix(day))


def aggregate_days(
    store: ObjectStore, days: Sequence[date], rules: EvidenceRules | None = None
) -> dict[date, int]:
    """Aggregate the given raw days in one lazy scan, writing one summary file per day.

    A day without raw data (or none that counts) has its summary removed. Returns the summary
    rows written per day.
    """
    keys: list[str] = []
    empty: list[date] = []
    for day in days:
        day_keys = _day_keys(store, day)
        if day_keys:
            keys.extend(day_keys)
        else:
            empty.append(day)
    written: dict[date, int] = {}
    for day in empty:
        store.delete(daily_summary_key(day))
        written[day] = 0
    if not keys:
        return written
    summary = summarize(store, keys, rules)
    if summary.height:
        for (day,), part in summary.partition_by("date", as_dict=True,
                                                 maintain_order=True).items():
            _write_summary(store, day, part)
            written[day] = part.height
    for day in days:
        if day not in written:  # files listed but holding no rows that count
            store.delete(daily_summary_key(day))
            written[day] = 0
    return written


def aggregate_day(
    store: ObjectStore, day: date, rules: EvidenceRules | None = None
) -> pl.DataFrame:
    """Aggregate one raw day into ``summaries/daily/.../part-0.parquet`` (empty day: removed)."""
    aggregate_days(store, [day], rules)
    return read_daily(store, [day])


def read_daily(
    store: ObjectStore, days: Iterable[date] | None = None, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """The daily summaries (all days, or the given ones) as one frame, optionally some columns."""
    wanted = {daily_summary_key(d) for d in days} if days is not None else None
    keys = [
        o.key for o in store.list(DAILY + "/")
        if o.key.endswith("/part-0.parquet") and (wanted is None or o.key in wanted)
    ]
    if not keys:
        return pl.DataFrame()
    paths = [store.local_path(k) for k in keys]
    cols = list(columns) if columns is not None else None
    if all(p is not None for p in paths):
        lazy = pl.scan_parquet([str(p) for p in paths], hive_partitioning=False,
                               missing_columns="insert", extra_columns="ignore")
        return (lazy.select(cols) if cols else lazy).collect()
    frames = [pl.read_parquet(io.BytesIO(store.get(k)), columns=cols) for k in keys]
    return pl.concat(frames, how="diagonal_relaxed")


def summary_days(store: ObjectStore) -> list[date]:
    """The days that have a daily summary, sorted."""
    days = []
    for obj in store.list(DAILY + "/"):
        parts = dict(p.split("=", 1) for p in obj.key.split("/") if "=" in p)
        if obj.key.endswith("/part-0.parquet") and {"year", "month", "day"} <= parts.keys():
            days.append(date(int(parts["year"]), int(parts["month"]), int(parts["day"])))
    return sorted(days)


def last_day_of(store: ObjectStore, evidence: str) -> date | None:
    """The last day whose summary holds rows of ``evidence`` (None: no such day). Reads one
    small column of the newest summaries until one has such rows (normally the first)."""
    for day in reversed(summary_days(store)):
        kinds = read_daily(store, [day], columns=["evidence"])
        if not kinds.is_empty() and (kinds["evidence"] == evidence).any():
            return day
    return None


# --- incremental planning ---------------------------------------------------------------------

def fingerprint(objects: Iterable[ObjectInfo]) -> str:
    """A day's identity: its raw keys and sizes (a rewrite, compaction or deletion changes it)."""
    h = hashlib.sha256()
    for obj in sorted(objects, key=lambda o: o.key):
        if obj.key.endswith(".parquet"):
            h.update(f"{obj.key}\t{obj.size}\n".encode())
    return h.hexdigest()[:32]


def raw_fingerprints(store: ObjectStore) -> dict[date, str]:
    """The fingerprint of every raw day, from one listing of ``raw/``."""
    by_day: dict[date, list[ObjectInfo]] = {}
    for obj in store.list(RAW + "/"):
        day = day_of_key(obj.key)
        if day is not None and obj.key.endswith(".parquet"):
            by_day.setdefault(day, []).append(obj)
    return {day: fingerprint(objs) for day, objs in sorted(by_day.items())}


def load_manifest(store: ObjectStore, rules: EvidenceRules | None = None) -> dict[date, str]:
    """The fingerprints of the days as last aggregated (empty when none, unreadable, or
    aggregated under other evidence rules: then every day is aggregated again)."""
    try:
        doc = json.loads(store.get(AGGREGATE_MANIFEST_KEY))
    except KeyError:
        return {}
    except ValueError:
        return {}  # a corrupt manifest only costs a full rebuild
    if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
        return {}
    if doc.get("rules") != (rules or EvidenceRules()).to_json():
        return {}
    if doc.get("refusal_detector") != DETECTOR_VERSION:
        return {}  # refusal counts of another rule: count every day again
    return {date.fromisoformat(d): str(fp) for d, fp in doc.get("days", {}).items()}


def save_manifest(
    store: ObjectStore, fingerprints: dict[date, str], rules: EvidenceRules | None = None
) -> None:
    doc = {"version": MANIFEST_VERSION, "rules": (rules or EvidenceRules()).to_json(),
           "refusal_detector": DETECTOR_VERSION,
           "days": {d.isoformat(): fp for d, fp in sorted(fingerprints.items())}}
    store.put(AGGREGATE_MANIFEST_KEY, json.dumps(doc, separators=(",", ":")).encode())


def dirty_days(store: ObjectStore) -> list[date]:
    """Days a GDPR operation marked for re-aggregation."""
    days = []
    for obj in store.list(DIRTY_PREFIX):
        try:
            days.append(date.fromisoformat(obj.key[len(DIRTY_PREFIX):]))
        except ValueError:
            continue
    return sorted(days)


@dataclass(frozen=True)
class AggregationPlan:
    """What a night must re-aggregate, and why."""

    changed: list[date]
    dirty: list[date]
    removed: list[date]
    fingerprints: dict[date, str] = field(repr=False)

    @property
    def days(self) -> list[date]:
        return sorted(set(self.changed) | set(self.dirty) | set(self.removed))


def plan(store: ObjectStore, rules: EvidenceRules | None = None) -> AggregationPlan:
    """Compare the raw listing with the manifest: which days need aggregating tonight."""
    current = raw_fingerprints(store)
    previous = load_manifest(store, rules)
    changed = [d for d, fp in current.items() if previous.get(d) != fp]
    # Summaries are listed too: a manifest that was unusable (another version, other rules) must
    # not leave the summary of a day whose raw data is gone behind.
    removed = sorted(d for d in set(previous) | set(summary_days(store)) if d not in current)
    return AggregationPlan(changed, dirty_days(store), removed, current)


def commit(
    store: ObjectStore, done: AggregationPlan, fingerprints: dict[date, str],
    rules: EvidenceRules | None = None,
) -> None:
    """Record the aggregated days in the manifest, then drop the dirty markers they consumed.

    Markers go last: a crash in between re-aggregates a day once more, never skips one.
    """
    manifest = load_manifest(store, rules)
    for day in done.days:
        manifest.pop(day, None)
    manifest.update({d: fp for d, fp in fingerprints.items() if d in set(done.days)})
    save_manifest(store, manifest, rules)
    for day in done.dirty:
        store.delete(dirty_marker_key(day))


def batches(days: Sequence[date], size: int = DEFAULT_DAYS_PER_BATCH) -> list[list[date]]:
    ordered = sorted(days)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def even_batches(days: Sequence[date], parts: int,
                 size: int = DEFAULT_DAYS_PER_BATCH) -> list[list[date]]:
    """``days`` in at least ``parts`` batches of consecutive days, as even as they come and none
    over ``size`` days (the nightly's parts when it spreads over workers)."""
    ordered = sorted(days)
    n = min(len(ordered), max(parts, -(-len(ordered) // size)))
    if n == 0:
        return []
    q, r = divmod(len(ordered), n)
    cuts = [i * q + min(i, r) for i in range(n + 1)]
    return [ordered[cuts[i]:cuts[i + 1]] for i in range(n)]


def aggregate_changed(
    store: ObjectStore, days_per_batch: int = DEFAULT_DAYS_PER_BATCH,
    rules: EvidenceRules | None = None,
) -> dict[date, int]:
    """One incremental aggregation without Prefect: plan, aggregate what changed, commit."""
    todo = plan(store, rules)
    written: dict[date, int] = {}
    for batch in batches(todo.days, days_per_batch):
        written.update(aggregate_days(store, batch, rules))
    commit(store, todo, todo.fingerprints, rules)
    return written
