"""When did a flagged model's change begin? A change-point estimate from one daily series.

The series is the daily history of the metric that carried the verdict (the model's significant
test with the smallest adjusted p-value). The method (docs/drift.md, "When it started") fits a
*ramp*: the series holds one level up to the change, moves linearly to a second level over zero
or more days, and stays there::

    y(t) = a                                   t < s        (before the change)
    y(t) = a + (c - a) (t - s + 1) / (e - s + 1) s ≤ t < e  (sliding)
    y(t) = c                                   t ≥ e        (after)

``s`` (the first changed day) and ``e`` (the first day at the new level) are found by exhaustive
least squares over every pair ``s ≤ e`` (``e == s`` is a step), vectorised in numpy: a 35-day
window is ~600 pairs. A piecewise-constant segmentation (``ruptures``' l2 cost, binary
segmentation) puts a gradual slide's single break in its middle, not at its start, and a
continuous piecewise-linear one leaves the first segment's slope free, so neither answers
"when did it start"; the ramp does, and needs no dependency.

The day range is read off the cost curve: every onset day whose best ramp is not worse than the
best one by more than a likelihood-ratio of ``chi2(1, 0.95) = 3.84``
(``n · ln(SSE(s) / SSE_min) ≤ 3.84``, a profile-likelihood set; for change points it is an
approximation, its measured coverage is in docs/drift.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

# The daily history column of each drift metric (``HistoryDay``'s fields). A metric without a
# daily series (``semantic``) cannot date its change: the next significant test is used.
SERIES_OF_METRIC = {
    "pass_rate": "pass_rate",
    "score": "score_mean",
    "latency_ms": "latency_p50_ms",
    "output_len": "output_len_mean",
    "consistency": "consistency",
    "error_rate": "error_rate",
    "refusal_rate": "refusal_rate",
}

# chi-square with one degree of freedom at 95 %: the cost-curve threshold of the day range.
RANGE_THRESHOLD = 3.841
# Days with a value needed before and after the onset (fewer: no estimate).
MIN_SIDE_DAYS = 2


@dataclass(frozen=True)
class ChangePoint:
    """The estimated first day of a change, the range of days it could be, and the metric whose
    daily series it was estimated from."""

    date: date
    earliest: date
    latest: date
    metric: str

    def to_json(self) -> dict[str, str]:
        return {"date": self.date.isoformat(), "earliest": self.earliest.isoformat(),
                "latest": self.latest.isoformat(), "metric": self.metric}


def _ramp_costs(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSE of the best ramp for every (onset, end) pair of day offsets: a (n_s, n_e) array with
    ``inf`` where the pair is not allowed (``e < s``, or too few days before or after)."""
    first, last = int(t[0]), int(t[-1])
    onsets = np.arange(first, last + 2)
    ends = np.arange(first, last + 2)
    s = onsets[:, None, None]
    e = ends[None, :, None]
    tt = t[None, None, :]
    # r: how far along the change a day is (0 before, 1 after); e == s gives a step.
    span = np.maximum(e - s + 1, 1)
    r = np.clip((tt - s + 1) / span, 0.0, 1.0)
    r = np.where(tt >= e, 1.0, np.where(tt < s, 0.0, r))
    q = 1.0 - r
    s00, s01, s11 = (q * q).sum(-1), (q * r).sum(-1), (r * r).sum(-1)
    b0, b1 = (q * y).sum(-1), (r * y).sum(-1)
    det = s00 * s11 - s01 * s01
    with np.errstate(divide="ignore", invalid="ignore"):
        explained = (s11 * b0 * b0 - 2 * s01 * b0 * b1 + s00 * b1 * b1) / det
    sse = float((y * y).sum()) - explained
    before = (t[None, :] < onsets[:, None]).sum(-1)[:, None]
    # Days from the onset on (a slide may still be under way on the last day: ``e`` is free).
    since = (t[None, :] >= onsets[:, None]).sum(-1)[:, None]
    allowed = ((ends[None, :] >= onsets[:, None]) & (before >= MIN_SIDE_DAYS)
               & (since >= MIN_SIDE_DAYS) & (det > 1e-12))
    return np.where(allowed, np.maximum(sse, 0.0), np.inf)


def estimate(
    days: Sequence[date], values: Sequence[float | None]
) -> tuple[date, date, date] | None:
    """The first day of the change in a daily series, and the earliest and latest it could be
    (``None`` when the series is too short or flat). Days without a value are left out."""
    pairs = sorted((d, float(v)) for d, v in zip(days, values, strict=True)
                   if v is not None and np.isfinite(v))
    if len(pairs) < 2 * MIN_SIDE_DAYS:
        return None
    origin = pairs[0][0]
    t = np.array([(d - origin).days for d, _ in pairs], dtype=np.float64)
    y = np.array([v for _, v in pairs])
    if np.ptp(y) == 0:
        return None  # nothing moved: no day to name
    costs = _ramp_costs(t, y)
    profile = costs.min(axis=1)  # best end for each onset
    if not np.isfinite(profile).any():
        return None
    best = int(np.argmin(profile))
    floor = max(float(profile[best]), 1e-12 * float((y * y).sum()) + 1e-300)
    with np.errstate(divide="ignore"):
        ratio = len(y) * np.log(np.maximum(profile, floor) / floor)
    inside = np.flatnonzero(np.isfinite(profile) & (ratio <= RANGE_THRESHOLD))
    first = int(t[0])

    def day(i: int) -> date:
        return origin + timedelta(days=first + i)

    return day(best), day(int(inside.min())), day(int(inside.max()))


def carrying_metric(tests: pl.DataFrame, model_id: str,
                    available: Iterable[str] = SERIES_OF_METRIC) -> str | None:
    """The metric of ``model_id``'s significant test with the smallest adjusted p-value, among
    the metrics with a daily series in ``available`` (None: no such test).

    Tests that can carry a verdict come first (``verdict_grade``, then ``watch_grade``, when the
    frame has them: ``verdicts.adjust``), so a significant test that decided nothing does not
    date the change."""
    usable = [m for m in available if m in SERIES_OF_METRIC]
    sig = tests.filter((pl.col("model_id") == model_id) & pl.col("significant")
                       & pl.col("metric").is_in(usable))
    if sig.is_empty():
        return None
    grades = [c for c in ("verdict_grade", "watch_grade") if c in sig.columns]
    order = [(~pl.col(c).fill_null(False)).alias(f"_not_{c}") for c in grades]
    ranked = sig.with_columns(order).sort(*(f"_not_{c}" for c in grades), "p_adjusted",
                                          "p_value", nulls_last=True)
    return str(ranked["metric"][0])


def change_points(
    tests: pl.DataFrame, model_ids: Iterable[str], history: pl.DataFrame,
    start: date | None = None, end: date | None = None,
) -> dict[str, ChangePoint]:
    """Per model of ``model_ids`` with a significant test: the change point of the carrying
    metric's daily series. ``history``: one row per model and day (``model_id``, ``date`` and
    the series columns of ``SERIES_OF_METRIC``), limited to ``start``..``end`` when given."""
    if history.is_empty() or tests.is_empty():
        return {}
    if start is not None and end is not None:
        history = history.filter(pl.col("date").is_between(start, end))
    present = [m for m, col in SERIES_OF_METRIC.items() if col in history.columns]
    out: dict[str, ChangePoint] = {}
    for model_id in model_ids:
        metric = carrying_metric(tests, model_id, present)
        if metric is None:
            continue
        rows = history.filter(pl.col("model_id") == model_id).sort("date")
        found = estimate(rows["date"].to_list(), rows[SERIES_OF_METRIC[metric]].to_list())
        if found is not None:
            out[model_id] = ChangePoint(*found, metric=metric)
    return out


def with_change_point(model: dict[str, Any], point: ChangePoint | None,
                      max_reasons: int = 5) -> dict[str, Any]:
    """A verdict dict (``verdicts.model_verdicts``) with its ``change_point`` and, right after the
    strongest reason, one saying when it started ("… on or about 2026-11-26")."""
    out = {**model, "change_point": point.to_json() if point else None}
    if point is None:
        return out
    when = (f"{point.metric} changed on or about {point.date.isoformat()} (between "
            f"{point.earliest.isoformat()} and {point.latest.isoformat()})")
    reasons = list(model.get("reasons") or [])
    out["reasons"] = [*reasons[:1], when, *reasons[1:]][:max_reasons]
    return out
