"""Per-suite figures of the recent window (the dashboard's compare view ranks models by them)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from tasks.drift.figures import suite_figures
from tasks.drift.report import compute_drift

AS_OF = date(2026, 11, 30)


def _row(day: int, model: str, suite: str, **kw: object) -> dict[str, object]:
    latency = kw.pop("latency", [100.0, 300.0])
    return {"date": AS_OF - timedelta(days=day), "model_id": model, "suite": suite,
            "prompt_id": "p1", "rows": 2, "scored": 2, "passes": 2, "latency_values": latency,
            "score_values": [1.0, 1.0], "output_len_values": [10, 12],
            "output_hashes": ["sha256:a"], "cost_usd": 0.01, **kw}


def test_figures_cover_the_recent_window_per_suite_only() -> None:
    rows = [
        # Recent window: two days of "smoke", one day of "math" at half the pass rate.
        _row(0, "m/a", "smoke", latency=[100.0, 200.0]),
        _row(1, "m/a", "smoke", latency=[300.0, 400.0], cost_usd=0.03),
        _row(0, "m/a", "math", passes=1, latency=[1000.0, 1000.0]),
        # Baseline: a terrible day that must not count.
        _row(20, "m/a", "smoke", passes=0, latency=[9000.0, 9000.0], cost_usd=5.0),
        # Unknown cost: the suite's cost is unknown, not undercounted.
        _row(0, "m/b", "smoke", cost_usd=None),
        _row(1, "m/b", "smoke"),
    ]
    frame = pl.DataFrame(rows).with_columns(recent=pl.col("date") > AS_OF - timedelta(days=7))
    figures = suite_figures(frame)
    assert figures["m/a"] == [
        {"suite": "math", "rows_recent": 2, "pass_rate_recent": 0.5, "latency_p50_ms": 1000.0,
         "cost_usd_recent": pytest.approx(0.01)},
        {"suite": "smoke", "rows_recent": 4, "pass_rate_recent": 1.0, "latency_p50_ms": 250.0,
         "cost_usd_recent": pytest.approx(0.04)},
    ]
    assert figures["m/b"][0]["cost_usd_recent"] is None
    assert figures["m/b"][0]["pass_rate_recent"] == 1.0


def test_the_report_carries_them_per_model() -> None:
    rows = [_row(d, "m/a", s) for d in range(35) for s in ("smoke", "math")]
    report = compute_drift(pl.DataFrame(rows), AS_OF)
    (model,) = report.models
    assert [f["suite"] for f in model["suite_figures"]] == ["math", "smoke"]
    assert all(f["rows_recent"] == 14 for f in model["suite_figures"])  # 7 days × 2 rows
