"""The result of a run as a person reads it: one line per model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SUMMARY_COLUMNS = ("model_id", "cases", "rows", "pass_rate", "errors", "input_tokens",
                   "output_tokens", "cost_usd", "latency_p50_ms", "latency_p95_ms")


def load_summarizer() -> None:
    """Import what ``summarize`` needs (Polars, ~0.1 s), for a caller with time to spare before
    it is needed: a flow waiting for its shards loads it then, not at start-up or at the end."""
    import polars  # noqa: F401


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: cases, rows, pass rate, errors, tokens, cost, p50/p95 latency."""
    if not records:
        return []
    # Imported when a run ends, not when `plumbline run` starts (docs/benchmarks.md, "Run cost").
    import polars as pl

    df = pl.DataFrame(
        {k: [r[k] for r in records] for k in (
            "model_id", "prompt_id", "passed", "error", "input_tokens", "output_tokens",
            "cost_usd", "latency_ms")},
        schema_overrides={"cost_usd": pl.Float64, "latency_ms": pl.Float64,
                          "input_tokens": pl.Int64, "output_tokens": pl.Int64,
                          "passed": pl.Boolean, "error": pl.String},
    )
    out = (
        df.group_by("model_id")
        .agg(
            cases=pl.col("prompt_id").n_unique(),
            rows=pl.len(),
            pass_rate=pl.col("passed").cast(pl.Float64).mean(),
            errors=pl.col("error").is_not_null().sum(),
            input_tokens=pl.col("input_tokens").sum(),
            output_tokens=pl.col("output_tokens").sum(),
            # Unknown prices stay unknown: a sum with any answered call's cost null is null, not
            # an undercount. Failed calls are not billed and do not make the total unknown.
            cost_usd=pl.when((pl.col("cost_usd").is_null() & pl.col("error").is_null()).any())
            .then(None).otherwise(pl.col("cost_usd").sum()),
            latency_p50_ms=pl.col("latency_ms").quantile(0.5, "linear"),
            latency_p95_ms=pl.col("latency_ms").quantile(0.95, "linear"),
        )
        .sort("model_id")
    )
    return out.select(SUMMARY_COLUMNS).to_dicts()


def round_value(column: str, value: Any) -> Any:
    """A number rounded as a reader wants it: milliseconds whole, money to the cent (4 decimals
    below a dollar), anything else to 3 decimals (whole from 100 up).

    The same rules as the CLI's tables (``flows/cli/tables.py``), kept numeric so that the Prefect
    table artifact still sorts as numbers; an interpolated p50 of ``710.9000000000001`` ms
    becomes ``711``.
    """
    if value is None or isinstance(value, bool) or not isinstance(value, float):
        return value
    if column.endswith("_ms"):
        return round(value)
    if column.startswith("cost"):
        if value == 0:
            return 0.0
        return round(value, 4) if abs(value) < 1 else round(value, 2)
    return round(value, 3) if abs(value) < 100 else round(value)


def for_reader(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with every number rounded by ``round_value`` (for the run-summary artifact)."""
    return [{k: round_value(k, v) for k, v in row.items()} for row in rows]
