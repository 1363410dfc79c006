"""Benchmark: what the per-suite figures (``tasks.drift.figures.suite_figures``, for the
dashboard's compare view) add to the nightly drift stage.

On the drift simulator's 20 models × 500 prompts × 35 days (3 samples per prompt per day, the
input of ``bench_nightly``'s drift phase without a store), in the same run: the drift stage
(``compute_drift``, which now includes the figures) and the figures alone over the same window
frame; each the median of three runs. Target: the figures cost under 5 % of the drift stage.

Run: ``python -m tests.bench.bench_suite_figures`` (about a minute).
"""

from __future__ import annotations

import time

import polars as pl

from tasks.drift.config import DriftConfig, Window
from tasks.drift.figures import suite_figures
from tasks.drift.metrics import group_window
from tasks.drift.report import compute_drift
from tests.tasks.drift import test_drift_simulation as sim

MODELS, PROMPTS = 20, 500


def _median(fn: object, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return sorted(times)[runs // 2]


def main() -> None:
    config = DriftConfig()
    daily = sim.simulate("latency", MODELS, seed=11, prompts=PROMPTS)
    # The simulator has one suite; two suites per model make the figures' group-by realistic.
    daily = daily.with_columns(
        suite=pl.when(pl.col("prompt_id").str.slice(-1).is_in(["0", "2", "4", "6", "8"]))
        .then(pl.lit("smoke")).otherwise(pl.lit("math")))
    frame = group_window(daily, Window.ending(sim.AS_OF, config)).frame
    drift_s = _median(lambda: compute_drift(daily, sim.AS_OF, config))
    figures_s = _median(lambda: suite_figures(frame))
    share = figures_s / drift_s
    print(f"rows={daily.height} drift stage {drift_s:.3f} s, suite figures {figures_s:.4f} s "
          f"({share:.1%} of the drift stage; target < 5 %)")
    print(f"RESULT daily_rows={daily.height} drift_s={drift_s:.3f} figures_s={figures_s:.4f} "
          f"figures_share_pct={share * 100:.2f}")


if __name__ == "__main__":
    main()
