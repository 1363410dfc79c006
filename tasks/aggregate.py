"""Daily aggregation with Polars: raw rows → one summary row per day × model × suite × prompt."""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import date

import polars as pl

from tasks.compaction import live_keys
from tasks.records_io import read_records
from tasks.storage.base import ObjectStore
from tasks.storage.layout import daily_summary_key, day_prefix

# The raw columns aggregation reads; `output` is never among them (its length is stored).
AGG_INPUT_COLUMNS = [
    "model_id", "suite", "prompt_id", "passed", "score", "latency_ms", "input_tokens",
    "output_tokens", "cost_usd", "output_hash", "output_len", "error", "year", "month", "day",
]

GROUP_KEYS = ["date", "model_id", "suite", "prompt_id"]


def scan_keys(store: ObjectStore, keys: list[str]) -> pl.LazyFrame:
    """A lazy frame over raw files: scanned in place on a local store, downloaded otherwise."""
    paths = [store.local_path(k) for k in keys]
    if keys and all(p is not None for p in paths):
        return pl.scan_parquet([str(p) for p in paths]).select(AGG_INPUT_COLUMNS)
    table = read_records(store, keys).select(AGG_INPUT_COLUMNS)
    return pl.from_arrow(table).lazy()  # type: ignore[union-attr]


def aggregate_frame(raw: pl.LazyFrame) -> pl.LazyFrame:
    """The per day × model × suite × prompt summary of a frame of raw rows."""
    answered = pl.col("error").is_null()
    return (
        raw.with_columns(date=pl.date(pl.col("year"), pl.col("month"), pl.col("day")),
                         suite=pl.col("suite").fill_null(""))
        .group_by(GROUP_KEYS)
        .agg(
            rows=pl.len(),
            errors=(~answered).sum(),
            scored=pl.col("passed").is_not_null().sum(),
            passes=pl.col("passed").cast(pl.Int64).sum(),
            score_mean=pl.col("score").mean(),
            latency_p50_ms=pl.col("latency_ms").filter(answered).quantile(0.5, "linear"),
            latency_p95_ms=pl.col("latency_ms").filter(answered).quantile(0.95, "linear"),
            input_tokens=pl.col("input_tokens").sum(),
            output_tokens=pl.col("output_tokens").sum(),
            cost_usd=pl.col("cost_usd").sum(),
            distinct_outputs=pl.col("output_hash").filter(answered).n_unique(),
            output_len_mean=pl.col("output_len").mean(),
        )
        .with_columns(
            pass_rate=pl.when(pl.col("scored") > 0)
            .then(pl.col("passes") / pl.col("scored"))
            .otherwise(None)
        )
        .sort(GROUP_KEYS)
    )


def aggregate_day(store: ObjectStore, day: date) -> pl.DataFrame:
    """Aggregate one raw day into ``summaries/daily/.../part-0.parquet`` (empty day: removed)."""
    keys = live_keys(store, day_prefix(day))
    key = daily_summary_key(day)
    if not keys:
        store.delete(key)
        return pl.DataFrame()
    summary = aggregate_frame(scan_keys(store, keys)).collect()
    buf = io.BytesIO()
    summary.write_parquet(buf, compression="zstd", compression_level=9)
    store.put(key, buf.getvalue())
    return summary


def read_daily(store: ObjectStore, days: Iterable[date] | None = None) -> pl.DataFrame:
    """The daily summaries (all days, or the given ones) as one frame."""
    from tasks.storage.layout import DAILY

    wanted = {daily_summary_key(d) for d in days} if days is not None else None
    frames = []
    for obj in store.list(DAILY + "/"):
        if not obj.key.endswith(".parquet") or (wanted is not None and obj.key not in wanted):
            continue
        frames.append(pl.read_parquet(io.BytesIO(store.get(obj.key))))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
