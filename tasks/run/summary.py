"""The result of a run as a person reads it: one line per model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SUMMARY_COLUMNS = ("model_id", "cases", "rows", "pass_rate", "errors", "input_tokens",
                   "output_tokens", "cost_usd", "latency_p50_ms", "latency_p95_ms")


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model (sorted): cases, rows, pass rate, errors, tokens, cost, p50/p95 latency.

    Plain Python: a run's rows are thousands, not the nightly's millions, and Polars would cost
    ``plumbline run`` ~0.1 s to import (docs/benchmarks.md, "Run cost"). Nulls are skipped as
    Polars skips them: a pass rate or percentile over no values is None, a sum over none is 0.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(rec["model_id"], []).append(rec)
    return [_model_line(model, groups[model]) for model in sorted(groups)]


def _model_line(model: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    passed = [float(r["passed"]) for r in rows if r["passed"] is not None]
    latencies = sorted(r["latency_ms"] for r in rows if r["latency_ms"] is not None)
    # Unknown prices stay unknown: a total with any answered call's cost missing is None, not an
    # undercount. Failed calls are not billed and do not make the total unknown.
    priced = all(r["cost_usd"] is not None for r in rows if r["error"] is None)
    line = {
        "model_id": model,
        "cases": len({r["prompt_id"] for r in rows}),
        "rows": len(rows),
        "pass_rate": sum(passed) / len(passed) if passed else None,
        "errors": sum(r["error"] is not None for r in rows),
        "input_tokens": sum(r["input_tokens"] or 0 for r in rows),
        "output_tokens": sum(r["output_tokens"] or 0 for r in rows),
        "cost_usd": float(sum(r["cost_usd"] or 0.0 for r in rows)) if priced else None,
        "latency_p50_ms": _quantile(latencies, 0.5),
        "latency_p95_ms": _quantile(latencies, 0.95),
    }
    return {k: line[k] for k in SUMMARY_COLUMNS}


def _quantile(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values, linearly interpolated between the two nearest ranks
    (numpy's and Polars' "linear")."""
    if not ordered:
        return None
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


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
