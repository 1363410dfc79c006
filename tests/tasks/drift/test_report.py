"""compute_drift end to end: its input guard, and the demo's history with known truth."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from tasks.drift.report import compute_drift
from tasks.drift.verdicts import DRIFTING, STABLE
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import aggregate_changed, read_daily
from tests.support.demo import build_demo_history


def test_empty_input_needs_a_date() -> None:
    with pytest.raises(ValueError, match="nothing to compare"):
        compute_drift(pl.DataFrame())


def test_demo_history_verdicts(store: LocalStore) -> None:
    today = date(2026, 11, 30)
    build_demo_history(store, today)
    aggregate_changed(store)
    report = compute_drift(read_daily(store))
    verdicts = {m["model_id"]: m for m in report.models}
    assert report.window.as_of == today
    assert verdicts["fake/drifting"]["verdict"] == DRIFTING
    assert verdicts["fake/stable"]["verdict"] == STABLE
    stable = verdicts["fake/stable"]
    assert stable["pass_rate_recent"] == stable["pass_rate_baseline"]
    assert stable["consistency"] == 1.0 and stable["consistency_band"] == STABLE
    # The change day is inside the recent window: every output differed from the day before.
    assert verdicts["fake/drifting"]["consistency_band"] == DRIFTING
    drifting = report.tests.filter((pl.col("model_id") == "fake/drifting")
                                   & (pl.col("level") == "model") & pl.col("significant"))
    assert {"latency_ms", "output_len"} <= set(drifting["metric"].to_list())
    assert not report.tests.filter((pl.col("model_id") == "fake/stable")
                                   & pl.col("significant")).height


def _scored_days(as_of: date, graded: bool) -> pl.DataFrame:
    """35 days of two prompts: p1's scores graded (when ``graded``) and lower in the recent
    week, p2's scores 0 or 1."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(35):
        recent = i < 7
        for prompt in ("p1", "p2"):
            if prompt == "p1" and graded:
                scores = np.round(rng.uniform(0.3, 1.0, 6) - 0.4 * recent, 2).tolist()
            else:
                scores = rng.integers(0, 2, 6).astype(float).tolist()
            rows.append({"date": as_of - timedelta(days=i), "model_id": "m", "suite": "s",
                         "prompt_id": prompt, "rows": 6, "scored": 6,
                         "passes": int(sum(x >= 0.5 for x in scores)),
                         "score_values": scores, "latency_values": [500.0] * 6})
    return pl.DataFrame(rows)


def test_scores_are_tested_only_where_graded() -> None:
    as_of = date(2026, 11, 30)
    tests = compute_drift(_scored_days(as_of, graded=True), as_of).tests \
        .filter(pl.col("metric") == "score")
    # The model (it has graded scores) and p1; p2's 0/1 scores repeat its pass-rate test.
    assert sorted(zip(tests["level"], tests["prompt_id"], strict=True),
                  key=str) == [("model", None), ("prompt", "p1")]
    assert tests.filter(pl.col("level") == "prompt")["effect_size"][0] < -0.5
    ungraded = compute_drift(_scored_days(as_of, graded=False), as_of).tests
    assert ungraded.filter(pl.col("metric") == "score").is_empty()
    assert not ungraded.filter(pl.col("metric") == "pass_rate").is_empty()
