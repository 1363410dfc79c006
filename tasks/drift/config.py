"""The drift stage's settings, its recent/baseline window, and the kinds of evidence a verdict is
computed from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

# The levels every test runs at, in the order of ``DriftConfig.level_shares``.
LEVELS = ("model", "suite", "prompt")

# Two kinds of evidence, never mixed in one verdict (docs/drift.md, "Evidence"): rows the
# project's own runs produced (scheduled and on-demand: the canary) and rows the community
# submitted. Each gets its own aggregation, its own tests and Benjamini–Hochberg family, and its
# own verdict; a model's verdict is the project's.
EVIDENCE_PROJECT = "project"
EVIDENCE_COMMUNITY = "community"
EVIDENCE_KINDS = (EVIDENCE_PROJECT, EVIDENCE_COMMUNITY)


@dataclass(frozen=True)
class DriftConfig:
    """The knobs of the drift stage; the defaults are what docs/drift.md measured."""

    # 7 vs 28 days: a week catches weekly release trains; four weeks of baseline make the
    # baseline's noise small next to the recent window's.
    recent_days: int = 7
    baseline_days: int = 28
    alpha: float = 0.05
    # A model needs this many rows in each window for any verdict but insufficient_data.
    min_rows: int = 30
    # A single test needs this many observations in each window to be run at all.
    min_test_n: int = 5
    # Romano et al. (2006): |Cliff's delta| < 0.147 is "negligible". Below it a significant
    # Mann–Whitney result is pseudo-replication noise (day-to-day provider load), not drift.
    min_cliffs_delta: float = 0.147
    # One percentage point of pass rate: a smaller move is not worth an alarm even when real.
    min_rate_difference: float = 0.01
    # A consistency drop smaller than this is not acted on even when significant.
    min_consistency_drop: float = 0.05
    # Meaning drift: the worst recent day's distance to the baseline's answers must lie at least
    # this many baseline standard deviations above the baseline days' mean (docs/drift.md).
    min_semantic_score: float = 3.0
    # Chi-square replaces Fisher's exact test when every expected count reaches this.
    chi2_min_expected: float = 5.0
    # Pramana's consistency bands.
    band_stable: float = 0.95
    band_watch: float = 0.80
    # Share of the false-discovery budget per level (weighted BH, Genovese et al. 2006): the
    # few model-level tests carry the verdict, the many prompt-level tests localise it.
    level_shares: tuple[float, float, float] = (0.6, 0.2, 0.2)

    def __post_init__(self) -> None:
        if self.recent_days < 1 or self.baseline_days < 1:
            raise ValueError("recent_days and baseline_days must be at least 1")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")


@dataclass(frozen=True)
class Window:
    as_of: date
    recent_start: date
    baseline_start: date
    baseline_end: date
    recent_days: int
    baseline_days: int

    @classmethod
    def ending(cls, as_of: date, config: DriftConfig) -> Window:
        recent_start = as_of - timedelta(days=config.recent_days - 1)
        baseline_end = recent_start - timedelta(days=1)
        baseline_start = baseline_end - timedelta(days=config.baseline_days - 1)
        return cls(as_of, recent_start, baseline_start, baseline_end,
                   config.recent_days, config.baseline_days)

    def days(self) -> list[date]:
        n = (self.as_of - self.baseline_start).days + 1
        return [self.baseline_start + timedelta(days=i) for i in range(n)]

    def to_json(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "recent_days": self.recent_days,
                "baseline_days": self.baseline_days,
                "recent_start": self.recent_start.isoformat(),
                "baseline_start": self.baseline_start.isoformat(),
                "baseline_end": self.baseline_end.isoformat()}


def config_json(config: DriftConfig) -> dict[str, Any]:
    """The settings as a JSON-ready dict."""
    return asdict(config)
