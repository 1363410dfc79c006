"""The drift stage's entry point, ``compute_drift``, and the report it returns: one report per kind
of evidence, each with its own tests, Benjamini–Hochberg family and verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from tasks.drift.config import (
    EVIDENCE_COMMUNITY,
    EVIDENCE_PROJECT,
    LEVELS,
    DriftConfig,
    Window,
)
from tasks.drift.metrics import (
    consistency_tests,
    distribution_tests,
    group_window,
    rate_tests,
    semantic_tests,
)
from tasks.drift.semantic import SemanticInput
from tasks.drift.verdicts import DRIFTING, adjust, model_verdicts

# Why the semantic metric did not run when nobody handed the drift stage any distances.
NOT_COMPUTED = "no embedding distances were computed for this night"


@dataclass
class DriftReport:
    """Everything the publish stage writes for one kind of evidence: the window, every test, a
    verdict per model."""

    window: Window
    config: DriftConfig
    tests: pl.DataFrame
    models: list[dict[str, Any]]
    consistency_daily: pl.DataFrame = field(repr=False)
    evidence: str = EVIDENCE_PROJECT
    # The semantic metric: ran, or skipped and why (published in drift.json).
    semantic: dict[str, Any] = field(default_factory=lambda: semantic_status(None))

    @property
    def drifting(self) -> list[dict[str, Any]]:
        return [m for m in self.models if m["verdict"] == DRIFTING]

    @property
    def degraded(self) -> list[dict[str, Any]]:
        """Models whose availability is degraded (an error-rate rise), whatever their verdict."""
        return [m for m in self.models
                if (m.get("availability") or {}).get("status") == "degraded"]


def semantic_status(semantic: SemanticInput | None) -> dict[str, Any]:
    """drift.json's account of the semantic metric: whether it ran, and if not, why."""
    if semantic is None:
        return {"status": "skipped", "reason": NOT_COMPUTED, "encoder": None, "embedded": 0,
                "reused": 0}
    ran = semantic.skipped is None and semantic.distances is not None
    return {"status": "ran" if ran else "skipped",
            "reason": None if ran else (semantic.skipped or NOT_COMPUTED),
            "encoder": semantic.encoder, "embedded": semantic.embedded, "reused": semantic.reused}


TEST_SCHEMA: dict[str, Any] = {
    "level": pl.String, "model_id": pl.String, "suite": pl.String, "prompt_id": pl.String,
    "metric": pl.String, "test": pl.String, "statistic": pl.Float64, "p_value": pl.Float64,
    "effect_size": pl.Float64, "effect_measure": pl.String, "n_recent": pl.Int64,
    "n_baseline": pl.Int64, "recent_value": pl.Float64, "baseline_value": pl.Float64,
    "ci_low": pl.Float64, "ci_high": pl.Float64, "min_effect": pl.Float64,
    "consistency_band": pl.String,
}


RESULT_SCHEMA: dict[str, Any] = {**TEST_SCHEMA, "p_adjusted": pl.Float64, "bh_weight": pl.Float64,
                                 "significant": pl.Boolean, "verdict_grade": pl.Boolean,
                                 "watch_grade": pl.Boolean}


def of_evidence(daily: pl.DataFrame, evidence: str) -> pl.DataFrame:
    """The daily summary rows of one kind of evidence (summaries without an ``evidence`` column
    predate the split and are taken as they are)."""
    if "evidence" not in daily.columns or daily.is_empty():
        return daily
    mine = pl.col("evidence") == evidence
    # Filtering copies every value list: skip it when every row is of this kind already.
    return daily if daily.select(mine.fill_null(False).all()).item() else daily.filter(mine)


def compute_drift(
    daily: pl.DataFrame, as_of: date | None = None, config: DriftConfig | None = None,
    evidence: str = EVIDENCE_PROJECT, semantic: SemanticInput | None = None,
) -> DriftReport:
    """Every drift test of a night over daily summaries (``tasks.summaries.aggregate`` rows), for
    the rows of one kind of ``evidence`` only (the project's by default): another kind's rows
    never enter these tests, their BH family, or these verdicts. ``semantic`` holds the
    prompt-day distances of the meaning-drift metric (``tasks.drift.semantic``), or why not."""
    config = config or DriftConfig()
    status = semantic_status(semantic)
    mine = of_evidence(daily, evidence)
    if as_of is None:
        # The last day of this evidence: rows of another kind (a community submission dated
        # tomorrow) must not move this kind's window.
        dated = mine if not mine.is_empty() else daily
        if dated.is_empty():
            raise ValueError("no daily summaries and no as_of date: nothing to compare")
        as_of = dated["date"].max()  # type: ignore[assignment]
    assert as_of is not None
    daily = mine
    window = Window.ending(as_of, config)
    empty = pl.DataFrame(schema=RESULT_SCHEMA)
    if daily.is_empty():
        return DriftReport(window, config, empty, [], pl.DataFrame(), evidence, status)
    groups = group_window(daily, window)
    if groups.frame.is_empty():
        return DriftReport(window, config, empty, [], pl.DataFrame(), evidence, status)
    parts = [frame for metric in ("pass_rate", "error_rate", "refusal_rate")
             for frame in rate_tests(groups, config, metric)]
    parts += distribution_tests(groups, config)
    consistency_parts, consistency_daily = consistency_tests(groups, window, config)
    parts += consistency_parts
    if status["status"] == "ran":
        assert semantic is not None
        distances = semantic.distances
        if distances is not None and "evidence" in distances.columns:
            distances = distances.filter(pl.col("evidence") == evidence)
        parts += semantic_tests(groups, window, distances, config)
    if not parts:
        return DriftReport(window, config, empty, model_verdicts(groups.frame, empty, config),
                           consistency_daily, evidence, status)
    tests = pl.concat([
        p.select([pl.col(c).cast(t) if c in p.columns else pl.lit(None, t).alias(c)
                  for c, t in TEST_SCHEMA.items()]) for p in parts])
    tests = adjust(tests, config)
    level_order = pl.col("level").replace_strict({lv: i for i, lv in enumerate(LEVELS)},
                                                 return_dtype=pl.Int8)
    tests = tests.sort(level_order, "model_id", "suite", "prompt_id", "metric", nulls_last=False)
    return DriftReport(window, config, tests, model_verdicts(groups.frame, tests, config),
                       consistency_daily, evidence, status)


@dataclass
class EvidenceReports:
    """A night's two reports: the project's (the verdicts) and the community's (labelled)."""

    project: DriftReport
    community: DriftReport


def compute_reports(
    daily: pl.DataFrame, as_of: date | None = None, config: DriftConfig | None = None,
    semantic: SemanticInput | None = None,
) -> EvidenceReports:
    """The project's and the community's reports over the same window, ending ``as_of`` (default:
    the project's last day, so community rows cannot move the project's window)."""
    project = compute_drift(daily, as_of, config, EVIDENCE_PROJECT, semantic)
    community = compute_drift(daily, project.window.as_of, config, EVIDENCE_COMMUNITY, semantic)
    return EvidenceReports(project, community)
