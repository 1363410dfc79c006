"""Drift statistics against scipy, verdict rules, and the demo's known truth."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from scipy import stats

from tasks.drift.config import DriftConfig, Window
from tasks.drift.report import compute_drift
from tasks.drift.stats import (
    benjamini_hochberg,
    chi2_yates_2x2,
    fisher_exact_2x2,
    mann_whitney_groups,
    wilson_interval,
)
from tasks.drift.verdicts import DRIFTING, INSUFFICIENT, STABLE, WATCH, band
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import aggregate_changed, read_daily
from tests.support.demo import build_demo_history


def test_fisher_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    a, b, c, d = (rng.integers(0, 30, 300) for _ in range(4))
    ours = fisher_exact_2x2(a, b, c, d)
    ref = [stats.fisher_exact([[w, x], [y, z]]).pvalue for w, x, y, z in zip(a, b, c, d,
                                                                           strict=True)]
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_chi2_matches_scipy_with_yates() -> None:
    rng = np.random.default_rng(8)
    a, b, c, d = (rng.integers(5, 500, 200) for _ in range(4))
    stat, p = chi2_yates_2x2(a, b, c, d)
    ref = [stats.chi2_contingency([[w, x], [y, z]]) for w, x, y, z in zip(a, b, c, d,
                                                                        strict=True)]
    np.testing.assert_allclose(stat, [r.statistic for r in ref], rtol=1e-9)
    np.testing.assert_allclose(p, [r.pvalue for r in ref], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("counting", [True, False], ids=["count-table", "sort"])
def test_mann_whitney_matches_scipy_with_ties(
    counting: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.drift.stats

    if not counting:  # force the sorting path used for many distinct values
        monkeypatch.setattr(tasks.drift.stats, "_COUNTING_CELLS", 0)
    rng = np.random.default_rng(9)
    n, groups = 6000, 40
    gid = rng.integers(0, groups, n)
    recent = rng.random(n) < 0.25
    values = np.round(rng.normal(size=n) + (gid % 3) * recent, 1)  # ties, some shifted groups
    mw = mann_whitney_groups(gid, recent, values, groups)
    for g in range(groups):
        x, y = values[(gid == g) & recent], values[(gid == g) & ~recent]
        ref = stats.mannwhitneyu(x, y, method="asymptotic")
        assert mw.u_recent[g] == pytest.approx(ref.statistic)
        assert mw.p_value[g] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
        # Cliff's delta by its definition: P(x > y) - P(x < y).
        delta = (np.sign(x[:, None] - y[None, :])).mean()
        assert mw.cliffs_delta[g] == pytest.approx(delta)
        assert mw.median_recent[g] == pytest.approx(np.median(x))


@pytest.mark.parametrize("counting", [True, False], ids=["count-table", "sort"])
def test_mann_whitney_empty_groups_and_signed_zeros(
    counting: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.drift.stats

    if not counting:
        monkeypatch.setattr(tasks.drift.stats, "_COUNTING_CELLS", 0)
    rng = np.random.default_rng(10)
    n, groups = 3000, 8
    gid = rng.integers(0, groups - 1, n)
    gid[gid == 3] = 4  # group 3 (in the middle) and 7 (at the end) have no values
    recent = rng.random(n) < 0.3
    values = np.round(rng.normal(size=n), 1)
    values[:50] = -0.0  # equal to 0.0: one tie, one rank
    mw = mann_whitney_groups(gid, recent, values, groups)
    for g in range(groups):
        x, y = values[(gid == g) & recent], values[(gid == g) & ~recent]
        assert (mw.n_recent[g], mw.n_baseline[g]) == (len(x), len(y))
        if len(x) == 0:
            assert mw.p_value[g] == 1.0 and np.isnan(mw.median_recent[g])
            continue
        ref = stats.mannwhitneyu(x, y, method="asymptotic")
        assert mw.p_value[g] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
        assert (mw.median_recent[g], mw.median_baseline[g]) == (np.median(x), np.median(y))


def test_dense_rank_orders_ties_zeros_and_nans() -> None:
    from tasks.drift.stats import dense_rank

    assert dense_rank(np.array([0.0, -0.0, 1.5, 1.5, -2.0])).tolist() == [1, 1, 2, 2, 0]
    # NaNs sort last, each its own rank (as an argsort would place them).
    assert dense_rank(np.array([1.0, np.nan, 0.5, np.nan])).tolist() == [1, 2, 0, 3]
    assert dense_rank(np.array([3.0, 1.0, 3.0]), integral=True).tolist() == [2, 0, 2]


def test_benjamini_hochberg_matches_scipy_and_weights_shift_power() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    np.testing.assert_allclose(benjamini_hochberg(p), stats.false_discovery_control(p))
    weights = np.array([5.0] + [5 / 9] * 9)  # mean 1
    weighted = benjamini_hochberg(p, weights)
    assert weighted[0] < benjamini_hochberg(p)[0] and weighted[1] > benjamini_hochberg(p)[1]


def test_wilson_interval_known_value() -> None:
    lo, hi = wilson_interval(np.array([81]), np.array([263]))
    # Wilson (1927) interval for 81/263 at 95 %: [0.2553, 0.3662].
    assert lo[0] == pytest.approx(0.2553, abs=1e-4) and hi[0] == pytest.approx(0.3662, abs=1e-4)


def test_bands() -> None:
    config = DriftConfig()
    assert band(0.96, config) == STABLE and band(0.95, config) == STABLE
    assert band(0.9, config) == WATCH and band(0.8, config) == WATCH
    assert band(0.79, config) == DRIFTING and band(None, config) is None


def test_windows_default_to_seven_and_twenty_eight_days() -> None:
    w = Window.ending(date(2026, 11, 30), DriftConfig())
    assert w.recent_start == date(2026, 11, 24) and w.baseline_end == date(2026, 11, 23)
    assert w.baseline_start == date(2026, 10, 27) and len(w.days()) == 35
    with pytest.raises(ValueError, match="recent_days"):
        DriftConfig(recent_days=0)


def _frame(days: int, rows_per_day: int, as_of: date) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    out = []
    for i in range(days):
        lat = rng.normal(500, 30, rows_per_day).tolist()
        out.append({"date": as_of - timedelta(days=i), "model_id": "m/new", "suite": "s",
                    "prompt_id": "p1", "rows": rows_per_day, "scored": rows_per_day,
                    "passes": rows_per_day - 1, "latency_values": lat,
                    "score_values": [1.0] * rows_per_day, "output_len_values": [10] * rows_per_day,
                    "output_hashes": ["sha256:a"]})
    return pl.DataFrame(out)


def test_too_few_rows_is_insufficient_data_never_stable() -> None:
    as_of = date(2026, 11, 30)
    report = compute_drift(_frame(days=10, rows_per_day=2, as_of=as_of), as_of)
    (model,) = report.models
    assert model["verdict"] == INSUFFICIENT
    assert model["rows_recent"] == 14 and "at least 30" in model["reasons"][0]


def test_a_model_that_only_errors_is_not_stable() -> None:
    as_of = date(2026, 11, 30)
    frame = _frame(days=35, rows_per_day=5, as_of=as_of).with_columns(
        errors=pl.when(pl.col("date") > as_of - timedelta(days=7)).then(5).otherwise(0),
    )
    empty_recent = pl.col("date") > as_of - timedelta(days=7)
    frame = frame.with_columns(
        scored=pl.when(empty_recent).then(0).otherwise(pl.col("scored")),
        passes=pl.when(empty_recent).then(0).otherwise(pl.col("passes")),
        latency_values=pl.when(empty_recent).then(pl.lit([], pl.List(pl.Float64)))
        .otherwise(pl.col("latency_values")),
    )
    (model,) = compute_drift(frame, as_of).models
    assert model["verdict"] == INSUFFICIENT and model["rows_recent"] == 35


def test_empty_input_needs_a_date() -> None:
    with pytest.raises(ValueError, match="nothing to compare"):
        compute_drift(pl.DataFrame())


# --- the demo's history: known truth -----------------------------------------------------------


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
