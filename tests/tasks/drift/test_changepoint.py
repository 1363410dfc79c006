"""When it started (issue 12): the change point of a daily series, the metric it is read from,
and the reason it adds. Its accuracy over many replicates is in test_drift_simulation.py."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from tasks.drift.changepoint import (
    ChangePoint,
    carrying_metric,
    change_points,
    estimate,
    with_change_point,
)

START = date(2026, 10, 27)
DAYS = [START + timedelta(days=i) for i in range(35)]


def test_a_step_is_dated_to_its_first_day_with_a_tight_range() -> None:
    values = [0.9] * 30 + [0.6] * 5
    assert estimate(DAYS, values) == (DAYS[30], DAYS[30], DAYS[30])


def test_a_noisy_step_and_a_slide_are_dated_to_where_they_begin() -> None:
    rng = np.random.default_rng(3)
    step = np.where(np.arange(35) < 25, 600.0, 800.0) + rng.normal(0, 20, 35)
    day, earliest, latest = estimate(DAYS, step.tolist())  # type: ignore[misc]
    assert day == DAYS[25] and earliest <= day <= latest
    # A slide from day 18 to day 31, then flat: its start, not its middle.
    t = np.arange(35)
    slide = 0.9 - 0.2 * np.clip((t - 17) / 14, 0, 1) + rng.normal(0, 0.01, 35)
    day, earliest, latest = estimate(DAYS, slide.tolist())  # type: ignore[misc]
    assert abs((day - DAYS[18]).days) <= 2 and earliest <= DAYS[18] <= latest


def test_missing_days_are_skipped_and_flat_or_short_series_give_none() -> None:
    values: list[float | None] = [0.9] * 20 + [0.5] * 15
    values[5] = None
    values[22] = float("nan")
    assert estimate(DAYS, values)[0] == DAYS[20]  # type: ignore[index]
    assert estimate(DAYS, [0.9] * 35) is None
    assert estimate(DAYS[:3], [0.9, 0.5, 0.5]) is None
    assert estimate(DAYS, [None] * 35) is None


def _tests() -> pl.DataFrame:
    return pl.DataFrame({
        "model_id": ["m/a", "m/a", "m/a", "m/a", "m/b"],
        "metric": ["pass_rate", "latency_ms", "semantic", "output_len", "pass_rate"],
        "p_value": [1e-4, 1e-3, 1e-12, 1e-20, 0.5],
        "p_adjusted": [1e-3, 1e-2, 1e-10, 0.2, 0.9],
        "significant": [True, True, True, False, False],
    })


def test_the_carrying_metric_is_the_strongest_significant_test_with_a_series() -> None:
    # semantic is stronger but has no daily series; output_len is not significant.
    assert carrying_metric(_tests(), "m/a") == "pass_rate"
    assert carrying_metric(_tests(), "m/a", ["latency_ms"]) == "latency_ms"
    assert carrying_metric(_tests(), "m/b") is None
    # A test that carried the verdict beats a stronger one that decided nothing.
    graded = _tests().with_columns(verdict_grade=pl.Series([False, True, False, False, False]),
                                   watch_grade=pl.Series([True, True, False, False, False]))
    assert carrying_metric(graded, "m/a") == "latency_ms"
    watch_only = graded.with_columns(verdict_grade=pl.lit(False))
    assert carrying_metric(watch_only, "m/a") == "pass_rate"


def test_change_points_read_each_models_series_of_its_carrying_metric() -> None:
    history = pl.DataFrame({
        "model_id": ["m/a"] * 35 + ["m/b"] * 35,
        "date": DAYS * 2,
        "pass_rate": [0.9] * 28 + [0.7] * 7 + [0.9] * 35,
        "latency_p50_ms": [500.0] * 10 + [900.0] * 25 + [500.0] * 35,
    })
    points = change_points(_tests(), ["m/a", "m/b"], history, DAYS[0], DAYS[-1])
    assert points == {"m/a": ChangePoint(DAYS[28], DAYS[28], DAYS[28], "pass_rate")}
    # Outside the window's days nothing is read.
    assert change_points(_tests(), ["m/a"], history, DAYS[0], DAYS[20]) == {}


def test_the_reason_says_on_or_about_after_the_strongest_one() -> None:
    model = {"model_id": "m/a", "reasons": ["r1", "r2", "r3", "r4", "r5"]}
    point = ChangePoint(date(2026, 11, 26), date(2026, 11, 25), date(2026, 11, 27), "pass_rate")
    out = with_change_point(model, point)
    assert out["change_point"] == {"date": "2026-11-26", "earliest": "2026-11-25",
                                   "latest": "2026-11-27", "metric": "pass_rate"}
    assert out["reasons"][0] == "r1" and len(out["reasons"]) == 5
    assert out["reasons"][1] == ("pass_rate changed on or about 2026-11-26 (between 2026-11-25 "
                                 "and 2026-11-27)")
    assert model["reasons"][1] == "r2"  # the input is not changed
    assert with_change_point(model, None) == {**model, "change_point": None}
