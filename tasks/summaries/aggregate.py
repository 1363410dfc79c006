"""Daily aggregation with Polars: raw rows → one summary row per day × model × suite × prompt.

Incremental: a small manifest (``state/aggregate_manifest.json``) fingerprints each day's raw
listing (keys and sizes); a night re-aggregates only the days whose fingerprint changed, the days
a GDPR operation marked dirty, and the days whose raw data disappeared. Besides the usual
aggregates, each summary row keeps the group's per-row latency, score and output length values
and its set of output hashes: the drift tests (Mann–Whitney U, day-over-day consistency) need
distributions, not means — see docs/drift.md for why lists beat histograms here.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from tasks.records.io import read_records
from tasks.records.live import live_keys
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

# The raw columns aggregation reads; `output` is never among them (its length is stored).
AGG_INPUT_COLUMNS = [
    "model_id", "suite", "prompt_id", "passed", "score", "latency_ms", "input_tokens",
    "output_tokens", "cost_usd", "output_hash", "output_len", "error", "year", "month", "day",
]

GROUP_KEYS = ["date", "model_id", "suite", "prompt_id"]

# Per-row value lists kept in each summary row for the distribution tests.
VALUE_LIST_COLUMNS = ["latency_values", "score_values", "output_len_values", "output_hashes"]

MANIFEST_VERSION = 1

# Days aggregated per Polars query: one scan over a few days amortises the query setup, and
# bounding it keeps memory flat however long the history (a 90-day rebuild never holds 90 days).
DEFAULT_DAYS_PER_BATCH = 10


def scan_keys(store: ObjectStore, keys: list[str]) -> pl.LazyFrame:
    """A lazy frame over raw files: scanned in place on a local store, downloaded otherwise."""
    paths = [store.local_path(k) for k in keys]
    if keys and all(p is not None and p.is_file() for p in paths):
        # The partition columns are stored in the files too, so the hive path is not parsed;
        # files written before a column existed get it as nulls instead of failing the night.
        return pl.scan_parquet(
            [str(p) for p in paths], hive_partitioning=False, missing_columns="insert",
            extra_columns="ignore", cast_options=pl.ScanCastOptions(integer_cast="upcast"),
        ).select(AGG_INPUT_COLUMNS)
    table = read_records(store, keys).select(AGG_INPUT_COLUMNS)
    return pl.from_arrow(table).lazy()  # type: ignore[union-attr]


def aggregate_frame(raw: pl.LazyFrame) -> pl.LazyFrame:
    """The per day × model × suite × prompt summary of a frame of raw rows."""
    answered = pl.col("error").is_null()
    latency = pl.col("latency_ms").filter(answered & pl.col("latency_ms").is_not_null())
    return (
        raw.with_columns(date=pl.date(pl.col("year"), pl.col("month"), pl.col("day")),
                         suite=pl.col("suite").fill_null(""))
        .group_by(GROUP_KEYS)
        .agg(
            rows=pl.len().cast(pl.Int64),
            errors=(~answered).sum().cast(pl.Int64),
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
            pass_rate=pl.when(pl.col("scored") > 0)
            .then(pl.col("passes") / pl.col("scored"))
            .otherwise(None)
        )
        .sort(GROUP_KEYS)
    )


def _write_summary(store: ObjectStore, day: date, summary: pl.DataFrame) -> None:
    buf = io.BytesIO()
    # Summaries are rewritten whenever their day changes: the fastest ZSTD level, not raw's 9.
    summary.write_parquet(buf, compression="zstd", compression_level=1)
    store.put(daily_summary_key(day), buf.getvalue())


def _day_keys(store: ObjectStore, day: date) -> list[str]:
    # One listing: files a crashed compaction already merged are left out, so no row counts twice.
    return live_keys(store, day_prefix(day))


def aggregate_days(store: ObjectStore, days: Sequence[date]) -> dict[date, int]:
    """Aggregate the given raw days in one lazy scan, writing one summary file per day.

    A day without raw data has its summary removed. Returns the summary rows written per day.
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
    # The streaming engine runs the group-by in parallel morsels with bounded memory; on a
    # 10 M-row history it is ~2x faster than the in-memory engine (tests/bench/bench_nightly.py).
    summary = aggregate_frame(scan_keys(store, keys)).collect(engine="streaming")
    for (day,), part in summary.partition_by("date", as_dict=True, maintain_order=True).items():
        _write_summary(store, day, part)
        written[day] = part.height
    for day in days:
        if day not in written:  # files listed but holding no rows
            store.delete(daily_summary_key(day))
            written[day] = 0
    return written


def aggregate_day(store: ObjectStore, day: date) -> pl.DataFrame:
    """Aggregate one raw day into ``summaries/daily/.../part-0.parquet`` (empty day: removed)."""
    aggregate_days(store, [day])
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


def load_manifest(store: ObjectStore) -> dict[date, str]:
    """The fingerprints of the days as last aggregated (empty when none or unreadable)."""
    try:
        doc = json.loads(store.get(AGGREGATE_MANIFEST_KEY))
    except KeyError:
        return {}
    except ValueError:
        return {}  # a corrupt manifest only costs a full rebuild
    if doc.get("version") != MANIFEST_VERSION:
        return {}
    return {date.fromisoformat(d): str(fp) for d, fp in doc.get("days", {}).items()}


def save_manifest(store: ObjectStore, fingerprints: dict[date, str]) -> None:
    doc = {"version": MANIFEST_VERSION,
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


def plan(store: ObjectStore) -> AggregationPlan:
    """Compare the raw listing with the manifest: which days need aggregating tonight."""
    current = raw_fingerprints(store)
    previous = load_manifest(store)
    changed = [d for d, fp in current.items() if previous.get(d) != fp]
    removed = sorted(d for d in previous if d not in current)
    return AggregationPlan(changed, dirty_days(store), removed, current)


def commit(store: ObjectStore, done: AggregationPlan, fingerprints: dict[date, str]) -> None:
    """Record the aggregated days in the manifest, then drop the dirty markers they consumed.

    Markers go last: a crash in between re-aggregates a day once more, never skips one.
    """
    manifest = load_manifest(store)
    for day in done.days:
        manifest.pop(day, None)
    manifest.update({d: fp for d, fp in fingerprints.items() if d in set(done.days)})
    save_manifest(store, manifest)
    for day in done.dirty:
        store.delete(dirty_marker_key(day))


def batches(days: Sequence[date], size: int = DEFAULT_DAYS_PER_BATCH) -> list[list[date]]:
    ordered = sorted(days)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def aggregate_changed(
    store: ObjectStore, days_per_batch: int = DEFAULT_DAYS_PER_BATCH
) -> dict[date, int]:
    """One incremental aggregation without Prefect: plan, aggregate what changed, commit."""
    todo = plan(store)
    written: dict[date, int] = {}
    for batch in batches(todo.days, days_per_batch):
        written.update(aggregate_days(store, batch))
    commit(store, todo, todo.fingerprints)
    return written
