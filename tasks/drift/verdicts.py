"""From a night's tests to a verdict per model: the bands, the weighted Benjamini–Hochberg
adjustment over every test of the night, and the verdict rules with their reasons; beside the
verdict, each model's availability (its error rate), which never makes a quality verdict."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from tasks.drift.config import LEVELS, DriftConfig
from tasks.drift.figures import suite_figures
from tasks.drift.stats import benjamini_hochberg

STABLE, WATCH, DRIFTING, INSUFFICIENT = "stable", "watch", "drifting", "insufficient_data"
OK, DEGRADED = "ok", "degraded"

# Metrics about whether the model answered at all, not about its answers: their tests share the
# night's Benjamini–Hochberg adjustment but form their own per-model Bonferroni family and feed
# the model's ``availability``, never its verdict (failed calls are not quality evidence).
AVAILABILITY_METRICS = ("error_rate",)


def band(consistency: float | None, config: DriftConfig) -> str | None:
    """Pramana's band of a consistency (share of prompts unchanged day over day)."""
    if consistency is None or np.isnan(consistency):
        return None
    if consistency >= config.band_stable:
        return STABLE
    return WATCH if consistency >= config.band_watch else DRIFTING


def adjust(tests: pl.DataFrame, config: DriftConfig) -> pl.DataFrame:
    """The night's tests with weighted BH-adjusted p-values, and which of them are significant,
    verdict-grade and watch-grade."""
    testable = tests["p_value"].is_not_null().to_numpy()
    level = tests["level"].to_numpy()
    p = tests["p_value"].fill_null(1.0).to_numpy()
    shares = dict(zip(LEVELS, config.level_shares, strict=True))
    counts = {lv: int(((level == lv) & testable).sum()) for lv in LEVELS}
    used = sum(shares[lv] for lv in LEVELS if counts[lv]) or 1.0
    m = int(testable.sum())
    weights = np.ones(len(tests))
    for lv in LEVELS:
        if counts[lv]:
            weights[level == lv] = shares[lv] / used * m / counts[lv]
    adjusted = np.full(len(tests), np.nan)
    adjusted[testable] = benjamini_hochberg(p[testable], weights[testable])
    tests = tests.with_columns(p_adjusted=pl.Series(adjusted).fill_nan(None),
                               bh_weight=pl.Series(weights))
    big_enough = pl.col("effect_size").abs() >= pl.col("min_effect")
    consistency_drop = pl.col("consistency_band").is_in([WATCH, DRIFTING]) & (
        pl.col("effect_size") >= pl.col("min_effect"))
    tests = tests.with_columns(
        significant=((pl.col("p_adjusted") < config.alpha)
                     & pl.when(pl.col("metric") == "consistency").then(consistency_drop)
                     .otherwise(big_enough)).fill_null(False)
    )
    # The verdict family of a model: its model- and suite-level tests. Requiring the raw p-value
    # to pass Bonferroni within that family bounds a stable model's chance of a drifting verdict
    # at alpha, however many other models drift the same night (BH alone grows more lenient
    # as the night's discoveries grow). `watch` gets the same guard over all the model's tests.
    tested = pl.col("p_value").is_not_null()
    family = (pl.col("level") != "prompt") & tested
    # Availability tests are their own family: an outage neither spends a quality test's guard
    # nor borrows from it.
    dimension = pl.col("metric").is_in(AVAILABILITY_METRICS)
    k_family = family.cast(pl.Int64).sum().over("model_id", dimension)
    k_all = tested.cast(pl.Int64).sum().over("model_id", dimension)
    return tests.with_columns(
        verdict_grade=(pl.col("significant") & family
                       & (pl.col("p_value") <= config.alpha / pl.max_horizontal(k_family, 1))),
        watch_grade=(pl.col("significant")
                     & (pl.col("p_value") <= config.alpha / pl.max_horizontal(k_all, 1))),
    )


def _window_sum(name: str, recent: bool) -> pl.Expr:
    """The sum of a column over one window's rows (a masked sum: a filter per group is slower)."""
    return pl.when(pl.col("recent") == recent).then(pl.col(name)).otherwise(0).sum()


def model_verdicts(
    frame: pl.DataFrame, tests: pl.DataFrame, config: DriftConfig
) -> list[dict[str, Any]]:
    """A verdict per model, with its reasons, from the window's daily rows (``recent`` flagged)
    and the night's adjusted tests."""
    errors = pl.col("errors").fill_null(0) if "errors" in frame.columns else pl.lit(0)
    windows = (
        # Lazy, so that only the columns used are read, not the frame's value lists.
        frame.lazy().with_columns(answered=pl.col("rows") - errors).group_by("model_id")
        .agg(**{f"{name}_{tag}": _window_sum(name, flag)
                for name in ("rows", "answered", "passes", "scored")
                for tag, flag in (("recent", True), ("baseline", False))},
             suites=pl.col("suite").unique().sort())
        .collect()
    )
    consistency = tests.filter((pl.col("metric") == "consistency") & (pl.col("level") == "model")) \
        .select("model_id", consistency="recent_value", consistency_band="consistency_band")
    availability = _availability(frame, tests, config)
    sig = tests.filter(pl.col("significant") & ~pl.col("metric").is_in(AVAILABILITY_METRICS)) \
        .sort("p_adjusted")
    evidence = sig.group_by("model_id", maintain_order=True).agg(
        significant_tests=pl.len(),
        watch=pl.col("watch_grade").any(),
        drifting=(pl.col("verdict_grade") & ((pl.col("metric") != "consistency")
                                             | (pl.col("consistency_band") == DRIFTING))).any(),
        top=pl.struct(pl.all()).head(5),
    )
    rows = (windows.join(consistency, on="model_id", how="left")
            .join(evidence, on="model_id", how="left").sort("model_id"))
    figures = suite_figures(frame)  # for the dashboard's compare view; no part of the verdict
    models = []
    for r in rows.iter_rows(named=True):
        reasons = [_reason(t) for t in (r["top"] or [])]
        # Failed calls are rows but not evidence: a model that only errors is never "stable".
        if r["answered_recent"] < config.min_rows or r["answered_baseline"] < config.min_rows:
            verdict = INSUFFICIENT
            reasons = [f"{r['answered_recent']} answered rows in the recent window and "
                       f"{r['answered_baseline']} in the baseline; at least {config.min_rows} "
                       "needed in each"]
        elif r["drifting"]:
            verdict = DRIFTING
        elif r["watch"]:
            verdict = WATCH
        else:
            verdict = STABLE
        models.append({
            "model_id": r["model_id"],
            "rows_recent": int(r["rows_recent"]),
            "rows_baseline": int(r["rows_baseline"]),
            "pass_rate_recent": (r["passes_recent"] / r["scored_recent"]
                                 if r["scored_recent"] else None),
            "pass_rate_baseline": (r["passes_baseline"] / r["scored_baseline"]
                                   if r["scored_baseline"] else None),
            "consistency": r["consistency"],
            "consistency_band": r["consistency_band"],
            "verdict": verdict,
            "reasons": reasons,
            "significant_tests": int(r["significant_tests"] or 0),
            "suites": [s for s in r["suites"] if s],
            "suite_figures": figures.get(r["model_id"], []),
            "availability": availability.get(r["model_id"]),
        })
    return models


def _availability(
    frame: pl.DataFrame, tests: pl.DataFrame, config: DriftConfig
) -> dict[str, dict[str, Any]]:
    """Per model: ``degraded`` when an error-rate test at model or suite level is verdict-grade
    and the recent rate is the higher; ``insufficient_data`` with fewer than ``min_rows`` calls
    in either window; ``ok`` otherwise. With the error rates and the recent window's most common
    error message."""
    if "errors" not in frame.columns:
        return {}
    # Lazy, so that only the columns used are read (an eager filter copies every value list).
    rates = frame.lazy().group_by("model_id").agg(
        **{f"{name}_{tag}": _window_sum(name, flag)
           for name in ("rows", "errors") for tag, flag in (("recent", True), ("baseline", False))}
    ).collect()
    top: dict[str, str] = {}
    if {"top_error", "top_error_count"} <= set(frame.columns):
        # Each summary row keeps its group's most common message: the model's is the message
        # with the largest count summed over its recent rows (ties: the alphabetically first).
        counted = (frame.lazy().filter(pl.col("recent") & pl.col("top_error").is_not_null())
                   .group_by("model_id", "top_error").agg(n=pl.col("top_error_count").sum())
                   .sort("model_id", "n", "top_error", descending=[False, True, False])
                   .group_by("model_id", maintain_order=True).first().collect())
        top = dict(zip(counted["model_id"].to_list(), counted["top_error"].to_list(),
                       strict=True))
    flagged = tests.filter(pl.col("metric").is_in(AVAILABILITY_METRICS) & pl.col("verdict_grade")
                           & (pl.col("effect_size") > 0)).sort("p_adjusted")
    out: dict[str, dict[str, Any]] = {}
    for r in rates.iter_rows(named=True):
        model = r["model_id"]
        recent = r["errors_recent"] / r["rows_recent"] if r["rows_recent"] else None
        baseline = r["errors_baseline"] / r["rows_baseline"] if r["rows_baseline"] else None
        mine = flagged.filter(pl.col("model_id") == model)
        if r["rows_recent"] < config.min_rows or r["rows_baseline"] < config.min_rows:
            status = INSUFFICIENT
            reasons = [f"{r['rows_recent']} calls in the recent window and "
                       f"{r['rows_baseline']} in the baseline; at least {config.min_rows} "
                       "needed in each"]
        elif mine.height:
            status = DEGRADED
            reasons = [_reason(t) for t in mine.head(5).iter_rows(named=True)]
        else:
            status, reasons = OK, []
        if status == DEGRADED and top.get(model):
            reasons.append(f"most common error in the recent window: {top[model]}")
        out[model] = {"status": status, "error_rate_recent": recent,
                      "error_rate_baseline": baseline, "top_error": top.get(model),
                      "reasons": reasons}
    return out


def _reason(t: dict[str, Any]) -> str:
    where = " / ".join(x for x in (t["suite"], t["prompt_id"]) if x) or "all prompts"
    if t["metric"] == "pass_rate":
        change = f"pass rate {t['baseline_value']:.2f} → {t['recent_value']:.2f}"
    elif t["metric"] in ("error_rate", "refusal_rate"):
        name = t["metric"].replace("_", " ")
        change = f"{name} {t['baseline_value']:.1%} → {t['recent_value']:.1%}"
    elif t["metric"] == "semantic":
        change = (f"meaning: distance to the baseline's answers {t['baseline_value']:.3f} → "
                  f"{t['recent_value']:.3f} on the worst recent day "
                  f"({t['effect_size']:+.1f} baseline SD)")
    elif t["metric"] == "consistency":
        change = f"consistency {t['recent_value']:.0%} ({t['consistency_band']})"
    else:
        change = (f"{t['metric']} median {t['baseline_value']:.4g} → {t['recent_value']:.4g} "
                  f"(Cliff's δ {t['effect_size']:+.2f})")
    return f"{where}: {change}, adjusted p={t['p_adjusted']:.2g}"
