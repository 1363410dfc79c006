"""compute_drift end to end: its input guard, and the demo's history with known truth."""

from __future__ import annotations

from datetime import date

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
