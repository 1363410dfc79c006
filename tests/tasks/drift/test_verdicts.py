"""Verdict rules: the consistency bands, and too little evidence is never a stable verdict."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from tasks.drift.config import DriftConfig
from tasks.drift.report import compute_drift
from tasks.drift.verdicts import DRIFTING, INSUFFICIENT, STABLE, WATCH, band


def test_bands() -> None:
    config = DriftConfig()
    assert band(0.96, config) == STABLE and band(0.95, config) == STABLE
    assert band(0.9, config) == WATCH and band(0.8, config) == WATCH
    assert band(0.79, config) == DRIFTING and band(None, config) is None


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
