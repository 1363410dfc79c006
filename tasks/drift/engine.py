"""Drift detection: did a model's behaviour move between a recent window and a baseline window?

Every test of a night is computed at once, vectorised in numpy over all groups (per model, per
suite, per prompt), never in a Python loop over groups:

- pass rate: Fisher's exact test, or chi-square with Yates' correction once every expected cell
  count is at least 5; a Wilson interval on the recent rate;
- score, latency, output length: Mann–Whitney U (normal approximation with tie and continuity
  correction, as scipy's ``method="asymptotic"``) with Cliff's delta as the effect size;
- consistency: the share of prompts whose set of output hashes is unchanged from the previous day
  (Pramana's bands), tested against the baseline's day-over-day change rate;
- weighted Benjamini–Hochberg over every test of the night, then one verdict per model.

docs/drift.md explains the choices and reports the false-positive rate and power measured on
simulated histories with known truth (``tests/tasks/test_drift_simulation.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl
from scipy import special, stats

STABLE, WATCH, DRIFTING, INSUFFICIENT = "stable", "watch", "drifting", "insufficient_data"
LEVELS = ("model", "suite", "prompt")
DISTRIBUTION_METRICS = {  # metric → the summary column holding its per-row values
    "score": "score_values",
    "latency_ms": "latency_values",
    "output_len": "output_len_values",
}


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


# --- vectorised statistics ----------------------------------------------------------------------

def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)


def fisher_exact_2x2(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Two-sided Fisher exact p-values of the tables ``[[a, b], [c, d]]``, all at once.

    Same definition as ``scipy.stats.fisher_exact``: the sum of the hypergeometric probabilities
    of every table with the observed margins that is no more likely than the observed one.
    """
    a, b, c, d = (np.asarray(x, dtype=np.int64) for x in (a, b, c, d))
    r1, c1 = a + b, a + c
    n = a + b + c + d
    lo = np.maximum(0, r1 - (b + d))
    hi = np.minimum(r1, c1)
    out = np.ones(a.shape, dtype=np.float64)
    if a.size == 0:
        return out
    span = hi - lo + 1
    # Bound the (tables × support) grid so one huge table cannot exhaust memory.
    order = np.argsort(span, kind="stable")
    start = 0
    while start < order.size:
        stop = start
        while stop < order.size and (stop - start + 1) * int(span[order[stop]]) <= 4_000_000:
            stop += 1
        stop = max(stop, start + 1)
        idx = order[start:stop]
        width = int(span[idx].max())
        k = lo[idx, None] + np.arange(width)[None, :]
        valid = k <= hi[idx, None]
        kk = np.where(valid, k, lo[idx, None])
        log_denominator = _log_comb(n[idx], r1[idx])[:, None]
        logp = _log_comb(c1[idx, None], kk) + _log_comb(n[idx, None] - c1[idx, None],
                                                        r1[idx, None] - kk) - log_denominator
        log_obs = (_log_comb(c1[idx], a[idx]) + _log_comb(n[idx] - c1[idx], r1[idx] - a[idx])
                   - log_denominator[:, 0])
        keep = valid & (logp <= log_obs[:, None] + np.log1p(1e-7))
        out[idx] = np.minimum(1.0, np.where(keep, np.exp(logp), 0.0).sum(axis=1))
        start = stop
    return out


def chi2_yates_2x2(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square statistic and p-value with Yates' correction, as ``chi2_contingency``."""
    a, b, c, d = (np.asarray(x, dtype=np.float64) for x in (a, b, c, d))
    n = a + b + c + d
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    diff = np.maximum(np.abs(a * d - b * c) - n / 2.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(margins > 0, n * diff**2 / margins, 0.0)
    return stat, stats.chi2.sf(stat, 1)


def wilson_interval(
    successes: np.ndarray, n: np.ndarray, z: float = 1.959963984540054
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions (better than Wald near 0 and 1)."""
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = s / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


@dataclass(frozen=True)
class MannWhitney:
    n_recent: np.ndarray
    n_baseline: np.ndarray
    u_recent: np.ndarray
    p_value: np.ndarray
    cliffs_delta: np.ndarray
    sigma: np.ndarray
    median_recent: np.ndarray
    median_baseline: np.ndarray


def _normal_approximation(
    n1: np.ndarray, n2: np.ndarray, u1: np.ndarray, ties: np.ndarray, total: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided p (tie-corrected, continuity-corrected, as scipy's asymptotic method), Cliff's
    delta and sigma of U, for every group at once. A group with no spread gets p = 1."""
    u2 = n1 * n2 - u1
    with np.errstate(divide="ignore", invalid="ignore"):
        var = n1 * n2 / 12.0 * ((total + 1) - ties / (total * (total - 1)))
        sigma = np.sqrt(np.maximum(var, 0.0))
        zstat = (np.maximum(u1, u2) - n1 * n2 / 2.0 - 0.5) / sigma
        p = np.clip(2.0 * stats.norm.sf(zstat), 0.0, 1.0)
        delta = (u1 - u2) / (n1 * n2)
    return np.where(sigma > 0, p, 1.0), delta, sigma


def dense_rank(values: np.ndarray, integral: bool | None = None) -> np.ndarray:
    """0-based ranks preserving order and ties; small integers are their own ranks (shifted).

    ``integral`` says the values are known to be whole numbers (an integer column), skipping
    the check.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = values.min(), values.max()
    if integral is None:
        # A cheap look at a few values first: latencies are fractional and skip the full scan.
        head = values[:1000]
        integral = bool(np.array_equal(head, np.round(head))
                        and np.array_equal(values, np.round(values)))
    if integral and high - low < 2**31:
        return (values - low).astype(np.int64)  # already ordered integers: no sort needed
    # The distinct values from a plain sort (several times faster than an argsort), then each
    # value's rank by hashing into them: no argsort and no scatter of the whole array.
    sorted_values = np.sort(values)
    distinct = np.empty(values.size, dtype=bool)
    distinct[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=distinct[1:])
    # NaNs sort last and are each their own rank, which a hash lookup cannot express.
    if not np.isnan(sorted_values[-1]):
        levels = sorted_values[distinct]
        ranks = pl.Series(values).replace_strict(
            pl.Series(levels), pl.Series(np.arange(levels.size, dtype=np.int64)),
            default=None, return_dtype=pl.Int64)
        if ranks.null_count() == 0:
            return ranks.to_numpy()
    # NaNs, or values equal under == but hashed apart: rank them by position instead.
    order = np.argsort(values)
    step = np.empty(values.size, dtype=np.int64)
    step[0] = 0
    step[1:] = sorted_values[1:] != sorted_values[:-1]
    out = np.empty(values.size, dtype=np.int64)
    out[order] = np.cumsum(step)
    return out


def mann_whitney_groups(
    gid: np.ndarray, recent: np.ndarray, values: np.ndarray, n_groups: int,
    dense: np.ndarray | None = None,
) -> MannWhitney:
    """Mann–Whitney U of recent vs baseline values within every group, in one sort.

    ``gid`` names each value's group (0..n_groups-1), ``recent`` is True for the recent window;
    ``dense`` (the values' ranks) may be passed when several groupings share the values.
    Average ranks for ties, tie-corrected variance and a continuity correction: the p-values
    equal ``scipy.stats.mannwhitneyu(x, y, method="asymptotic")`` group by group.
    """
    gid = np.asarray(gid, dtype=np.int64)
    recent = np.asarray(recent, dtype=bool)
    values = np.asarray(values, dtype=np.float64)
    dense = dense_rank(values) if dense is None else dense
    n = dense.size
    if n == 0:
        z = np.zeros(n_groups)
        nan = np.full(n_groups, np.nan)
        return MannWhitney(z.copy(), z.copy(), z, np.ones(n_groups), z, z, nan, nan)
    span = int(dense.max()) + 1
    # Counting costs a pass over the (group × value × window) table, sorting a pass over the
    # values: count while the table is no bigger than the values (and always for small inputs).
    cells = n_groups * span
    if cells <= _COUNTING_CELLS and 2 * cells <= max(n, _SMALL_TABLE):
        return _mann_whitney_counting(gid, recent, values, dense, n_groups, span)
    # One sort of packed integer keys (group, value rank, window) instead of an argsort and
    # gathers: the sorted keys alone carry the group, the tie runs and the window of each value.
    key = _packed_keys(gid, dense, recent, span, n_groups * span * 2 < 2**31)
    key.sort()
    r = (key & 1).astype(bool)
    cell = key >> 1
    # Group sizes and recent counts from the sorted keys: a binary search per group boundary
    # and a running count of recent values, instead of a counting pass over every value.
    bounds = np.searchsorted(cell, np.arange(n_groups + 1, dtype=cell.dtype) * span)
    recent_before = np.zeros(n + 1, dtype=np.int64 if n >= 2**31 else np.int32)
    np.cumsum(r, out=recent_before[1:])
    start = bounds[:-1]
    counts = np.diff(bounds).astype(np.float64)
    n1 = (recent_before[bounds[1:]] - recent_before[start]).astype(np.float64)
    n2 = counts - n1
    # Runs of equal (group, value) are the ties; their average rank is computed from global
    # positions and shifted by the group's start, so no per-element rank array is built.
    new_run = np.empty(n, dtype=bool)
    new_run[0] = True
    np.not_equal(cell[1:], cell[:-1], out=new_run[1:])
    run_first = np.flatnonzero(new_run)
    run_len = np.diff(np.append(run_first, n)).astype(np.float64)
    run_group = cell[run_first] // span
    run_rank = run_first + (run_len + 1) / 2.0
    recent_in_run = np.diff(recent_before[np.append(run_first, n)]).astype(np.float64)
    r1 = np.bincount(run_group, weights=recent_in_run * run_rank, minlength=n_groups) \
        - n1 * start
    ties = np.bincount(run_group, weights=run_len * run_len * run_len - run_len,
                       minlength=n_groups)
    u1 = r1 - n1 * (n1 + 1) / 2.0
    p, delta, sigma = _normal_approximation(n1, n2, u1, ties, n1 + n2)
    levels = np.empty(span, dtype=np.float64)
    levels[dense] = values
    medians = [_sorted_medians(np.flatnonzero(r == flag), cell, span, levels, per, n_groups)
               for flag, per in ((True, n1), (False, n2))]
    return MannWhitney(n1, n2, u1, p, np.nan_to_num(delta), sigma, medians[0], medians[1])


def _packed_keys(
    gid: np.ndarray, dense: np.ndarray, recent: np.ndarray, span: int, small: bool
) -> np.ndarray:
    """``(gid × span + dense) × 2 + recent`` built in place in one array, 32-bit when ``small``
    (half the bytes to write and to sort)."""
    key = gid.astype(np.int32 if small else np.int64)
    key *= span
    np.add(key, dense, out=key, casting="unsafe")
    key <<= 1
    key |= recent
    return key


# Up to this many (group × distinct value) cells, Mann–Whitney is computed from counts without
# sorting (output lengths, scores on a few levels): a table of 10k prompts × 2k lengths is cheap.
_COUNTING_CELLS = 20_000_000
_SMALL_TABLE = 1 << 16


def _u_from_tables(
    rec: np.ndarray, base: np.ndarray, n1: np.ndarray, n2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U of recent vs baseline, the tie term and the total count from (group × value) tables."""
    below = np.cumsum(base, axis=1) - base
    u1 = (rec * (below + 0.5 * base)).sum(axis=1)
    tied = rec + base
    # Counts are whole numbers, so every sum here is exact whatever its order.
    ties = (tied * tied * tied - tied).sum(axis=1)
    return u1, ties, n1 + n2


def _table_medians(table: np.ndarray, counts: np.ndarray, levels: np.ndarray) -> np.ndarray:
    out = np.full(table.shape[0], np.nan)
    has = counts > 0
    if not has.any():
        return out
    cum = np.cumsum(table if has.all() else table[has], axis=1)
    c = counts[has][:, None]
    lo = np.argmax(cum >= (c - 1) // 2 + 1, axis=1)
    hi = np.argmax(cum >= c // 2 + 1, axis=1)
    out[has] = (levels[lo] + levels[hi]) / 2.0
    return out


def _mann_whitney_counting(
    gid: np.ndarray, recent: np.ndarray, values: np.ndarray, dense: np.ndarray,
    n_groups: int, span: int,
) -> MannWhitney:
    # One count of (group, value, window) cells instead of two masked copies of the values.
    cell = _packed_keys(gid, dense, recent, span, n_groups * span * 2 < 2**31)
    size = n_groups * span * 2
    both = np.bincount(cell, minlength=size).reshape(n_groups, span, 2).astype(np.float64)
    rec, base = both[:, :, 1], both[:, :, 0]
    n1, n2 = rec.sum(axis=1), base.sum(axis=1)
    u1, ties, total = _u_from_tables(rec, base, n1, n2)
    levels = np.full(span, np.nan)
    levels[dense] = values
    p, delta, sigma = _normal_approximation(n1, n2, u1, ties, total)
    return MannWhitney(n1, n2, u1, p, np.nan_to_num(delta), sigma,
                       _table_medians(rec, n1, levels), _table_medians(base, n2, levels))


def _sorted_medians(positions: np.ndarray, cell: np.ndarray, span: int, levels: np.ndarray,
                    per_group: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group medians of the elements at ``positions`` of the sorted (group × span + value
    rank) keys ``cell``; a value rank's value is ``levels[rank]``."""
    out = np.full(n_groups, np.nan)
    counts = per_group.astype(np.int64)
    has = counts > 0
    if not has.any():
        return out
    starts = np.cumsum(counts) - counts
    lo = positions[starts[has] + (counts[has] - 1) // 2]
    hi = positions[starts[has] + counts[has] // 2]
    out[has] = (levels[cell[lo] % span] + levels[cell[hi] % span]) / 2.0
    return out


def benjamini_hochberg(p: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(Weighted) Benjamini–Hochberg adjusted p-values; with weights averaging 1 the FDR stays
    at the nominal level (Genovese, Roeder & Wasserman 2006)."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    q = p if weights is None else np.minimum(p / np.asarray(weights, dtype=np.float64), np.inf)
    order = np.argsort(q, kind="stable")
    scaled = q[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def band(consistency: float | None, config: DriftConfig) -> str | None:
    if consistency is None or np.isnan(consistency):
        return None
    if consistency >= config.band_stable:
        return STABLE
    return WATCH if consistency >= config.band_watch else DRIFTING


# --- the night's tests ---------------------------------------------------------------------------

@dataclass
class DriftReport:
    """Everything the publish stage writes: the window, every test, a verdict per model."""

    window: Window
    config: DriftConfig
    tests: pl.DataFrame
    models: list[dict[str, Any]]
    consistency_daily: pl.DataFrame = field(repr=False)

    @property
    def drifting(self) -> list[dict[str, Any]]:
        return [m for m in self.models if m["verdict"] == DRIFTING]


TEST_SCHEMA: dict[str, Any] = {
    "level": pl.String, "model_id": pl.String, "suite": pl.String, "prompt_id": pl.String,
    "metric": pl.String, "test": pl.String, "statistic": pl.Float64, "p_value": pl.Float64,
    "effect_size": pl.Float64, "effect_measure": pl.String, "n_recent": pl.Int64,
    "n_baseline": pl.Int64, "recent_value": pl.Float64, "baseline_value": pl.Float64,
    "ci_low": pl.Float64, "ci_high": pl.Float64, "min_effect": pl.Float64,
    "consistency_band": pl.String,
}


@dataclass
class _Groups:
    """The (model, suite, prompt) groups of the window and their model/suite parents."""

    frame: pl.DataFrame  # daily rows with pgid, sidx, midx, recent
    labels: dict[str, pl.DataFrame]  # level → gid-ordered (model_id, suite, prompt_id)
    maps: dict[str, np.ndarray]  # level → gid of each prompt group
    multi_suite: np.ndarray  # per suite gid: its model has more than one suite


def _groups(daily: pl.DataFrame, window: Window) -> _Groups:
    in_window = pl.col("date").is_between(window.baseline_start, window.as_of)
    # Filtering copies every value list: skip it when the summaries are the window already.
    inside = daily.select(in_window.fill_null(False).all()).item()
    frame = daily if inside else daily.filter(in_window)
    frame = frame.with_columns(
        recent=pl.col("date") >= window.recent_start,
        # Dense ranks of the sorted keys: group ids without joining on three string columns.
        pgid=(pl.struct("model_id", "suite", "prompt_id").rank("dense") - 1).cast(pl.Int64),
    )
    # The coarser ids are ranked over the distinct prompt groups only (a few thousand rows
    # instead of every daily row), then carried to the rows by their prompt group.
    keys = frame.select("pgid", "model_id", "suite", "prompt_id").unique("pgid").sort("pgid") \
        .with_columns(
            sidx=(pl.struct("model_id", "suite").rank("dense") - 1).cast(pl.Int64),
            midx=(pl.col("model_id").rank("dense") - 1).cast(pl.Int64),
        )
    frame = frame.with_columns(sidx=keys["sidx"].gather(frame["pgid"]),
                               midx=keys["midx"].gather(frame["pgid"]))
    suites = keys.unique("sidx").sort("sidx")
    models = keys.unique("midx").sort("midx")
    per_model = suites.group_by("midx").agg(n=pl.len())
    multi = suites.join(per_model, on="midx").sort("sidx")["n"].to_numpy() > 1
    none = pl.lit(None, dtype=pl.String)
    labels = {
        "model": models.select("model_id", suite=none, prompt_id=none),
        "suite": suites.select("model_id", "suite", prompt_id=none),
        "prompt": keys.select("model_id", "suite", "prompt_id"),
    }
    maps = {"model": keys["midx"].to_numpy(), "suite": keys["sidx"].to_numpy(),
            "prompt": keys["pgid"].to_numpy()}
    return _Groups(frame, labels, maps, multi)


def _level_keep(groups: _Groups, level: str, n: int) -> np.ndarray:
    # A model with one suite would repeat its model-level tests at suite level: skip those.
    return groups.multi_suite.copy() if level == "suite" else np.ones(n, dtype=bool)


def _frame(level: str, labels: pl.DataFrame, idx: np.ndarray, **cols: Any) -> pl.DataFrame:
    """Test rows for the groups ``idx`` of a level; array columns are aligned with ``idx``."""
    return labels[idx].with_columns(level=pl.lit(level), **{
        k: pl.Series(k, v) if isinstance(v, np.ndarray) else pl.lit(v) for k, v in cols.items()
    })


def _pass_rate_tests(groups: _Groups, config: DriftConfig) -> list[pl.DataFrame]:
    f = groups.frame
    pgid = f["pgid"].to_numpy()
    recent = f["recent"].to_numpy()
    passes = f["passes"].fill_null(0).to_numpy().astype(np.float64)
    scored = f["scored"].fill_null(0).to_numpy().astype(np.float64)
    out = []
    for level in LEVELS:
        gid = groups.maps[level][pgid]
        size = groups.labels[level].height
        a = np.bincount(gid, weights=np.where(recent, passes, 0), minlength=size)
        n1 = np.bincount(gid, weights=np.where(recent, scored, 0), minlength=size)
        c = np.bincount(gid, weights=np.where(recent, 0, passes), minlength=size)
        n2 = np.bincount(gid, weights=np.where(recent, 0, scored), minlength=size)
        b, d = n1 - a, n2 - c
        # A table with no failures (or no passes) at all carries no information about a change.
        keep = (_level_keep(groups, level, size) & (n1 >= config.min_test_n)
                & (n2 >= config.min_test_n) & (a + c > 0) & (b + d > 0))
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            continue
        a, b, c, d, n1, n2 = a[idx], b[idx], c[idx], d[idx], n1[idx], n2[idx]
        total = n1 + n2
        expected_min = np.minimum.reduce([
            n1 * (a + c), n1 * (b + d), n2 * (a + c), n2 * (b + d)]) / total
        large = expected_min >= config.chi2_min_expected
        chi_stat, chi_p = chi2_yates_2x2(a, b, c, d)
        fisher_p = np.ones(idx.size)
        small = np.flatnonzero(~large)
        if small.size:
            fisher_p[small] = fisher_exact_2x2(a[small], b[small], c[small], d[small])
        with np.errstate(divide="ignore", invalid="ignore"):
            odds = np.where(b * c > 0, a * d / (b * c), np.inf)
        lo, hi = wilson_interval(a, n1)
        out.append(_frame(
            level, groups.labels[level], idx,
            metric="pass_rate",
            test=np.where(large, "chi2", "fisher"),
            statistic=np.where(large, chi_stat, odds),
            p_value=np.where(large, chi_p, fisher_p),
            effect_size=a / n1 - c / n2,
            effect_measure="rate_difference",
            n_recent=n1.astype(np.int64), n_baseline=n2.astype(np.int64),
            recent_value=a / n1, baseline_value=c / n2,
            ci_low=lo, ci_high=hi, min_effect=config.min_rate_difference,
        ))
    return out


def _flat_values(
    groups: _Groups, column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """A list column's values flattened, with each value's prompt group and window, and whether
    the column holds integers."""
    lists = groups.frame[column]
    inner = lists.dtype.inner if isinstance(lists.dtype, pl.List) else None
    integral = inner is not None and inner.is_integer()
    lengths = lists.list.len().fill_null(0).to_numpy()
    values = lists.explode(keep_nulls=False, empty_as_null=False).cast(pl.Float64).to_numpy()
    pgid = np.repeat(groups.frame["pgid"].to_numpy(), lengths)
    recent = np.repeat(groups.frame["recent"].to_numpy(), lengths)
    ok = ~np.isnan(values)
    if not ok.all():
        values, pgid, recent = values[ok], pgid[ok], recent[ok]
    return values, pgid, recent, integral


def _metric_tests(groups: _Groups, config: DriftConfig, metric: str) -> list[pl.DataFrame]:
    column = DISTRIBUTION_METRICS[metric]
    if column not in groups.frame.columns:
        return []
    values, pgid, recent, integral = _flat_values(groups, column)
    if values.size == 0:
        return []
    graded_rows = (values != 0) & (values != 1)
    if metric == "score" and not graded_rows.any():
        # 0/1 scores repeat the pass-rate test: testing them twice only spends alpha.
        return []
    dense = dense_rank(values, integral or None)
    out = []
    for level in LEVELS:
        if level == "suite" and not groups.multi_suite.any():
            continue
        gid = groups.maps[level][pgid]
        size = groups.labels[level].height
        mw = mann_whitney_groups(gid, recent, values, size, dense)
        keep = (_level_keep(groups, level, size) & (mw.n_recent >= config.min_test_n)
                & (mw.n_baseline >= config.min_test_n) & (mw.sigma > 0))
        if metric == "score":
            keep &= np.bincount(gid, weights=graded_rows, minlength=size) > 0
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            continue
        out.append(_frame(
            level, groups.labels[level], idx,
            metric=metric, test="mannwhitneyu", statistic=mw.u_recent[idx],
            p_value=mw.p_value[idx], effect_size=mw.cliffs_delta[idx],
            effect_measure="cliffs_delta",
            n_recent=mw.n_recent[idx].astype(np.int64),
            n_baseline=mw.n_baseline[idx].astype(np.int64),
            recent_value=mw.median_recent[idx], baseline_value=mw.median_baseline[idx],
            min_effect=config.min_cliffs_delta,
        ))
    return out


def _distribution_tests(groups: _Groups, config: DriftConfig) -> list[pl.DataFrame]:
    return [frame for metric in DISTRIBUTION_METRICS
            for frame in _metric_tests(groups, config, metric)]


def prompt_changes(daily: pl.DataFrame, prompt: Sequence[str] | None = None) -> pl.DataFrame:
    """Per prompt × day: whether its set of output hashes differs from the previous day's.

    Only days whose previous day has outputs for the prompt appear. The aggregation stores the
    hashes sorted and unique, so equal sets are equal lists. ``prompt`` names the columns that
    identify a prompt (an integer id is faster than three strings).
    """
    prompt = list(prompt or ("model_id", "suite", "prompt_id"))
    carry = [c for c in ("model_id", "suite", "prompt_id") if c not in prompt]
    return (
        # Lazy, so the filter copies only the columns used here, not every value list.
        daily.lazy().filter(pl.col("output_hashes").list.len() > 0)
        .select(*prompt, *carry, "date", outputs=pl.col("output_hashes").hash())
        .sort(*prompt, "date")
        # Sorted by prompt, the previous row is the prompt's previous day when its keys match:
        # a plain shift, cheaper than a windowed one per prompt.
        .with_columns(prev_date=pl.col("date").shift(1),
                      prev_outputs=pl.col("outputs").shift(1),
                      same_prompt=pl.all_horizontal(pl.col(c).shift(1).eq_missing(pl.col(c))
                                                    for c in prompt))
        .filter(pl.col("same_prompt")
                & (pl.col("prev_date") == pl.col("date") - pl.duration(days=1)))
        .select(*prompt, *carry, "date", changed=pl.col("outputs") != pl.col("prev_outputs"))
        .collect()
    )


def daily_consistency(
    daily: pl.DataFrame, by: tuple[str, ...] = ("model_id",), changes: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Per ``by`` × day: prompts compared with the previous day, how many changed their set of
    output hashes, and the consistency (share unchanged). Days without a previous day are absent.
    """
    changes = prompt_changes(daily) if changes is None else changes
    return (
        changes.group_by(*by, "date")
        .agg(n_compared=pl.len().cast(pl.Int64), n_changed=pl.col("changed").sum().cast(pl.Int64))
        .with_columns(consistency=1.0 - pl.col("n_changed") / pl.col("n_compared"))
        .sort(*by, "date")
    )


def _consistency_tests(
    groups: _Groups, window: Window, config: DriftConfig
) -> tuple[list[pl.DataFrame], pl.DataFrame]:
    frame = groups.frame
    if "output_hashes" not in frame.columns or frame.is_empty():
        return [], pl.DataFrame()
    changes = prompt_changes(frame, ["pgid"])
    out = []
    model_daily = pl.DataFrame()
    for level, by in (("model", ("model_id",)), ("suite", ("model_id", "suite"))):
        if level == "suite" and not groups.multi_suite.any():
            continue
        per_day = daily_consistency(frame, by, changes)
        if level == "model":
            model_daily = per_day
        if per_day.is_empty():
            continue
        recent = per_day.filter(pl.col("date") >= window.recent_start)
        worst = (recent.sort("consistency", "date", descending=[False, True])
                 .group_by(*by, maintain_order=True).first()
                 .join(recent.group_by(*by).agg(recent_days=pl.len()), on=list(by)))
        base = (per_day.filter(pl.col("date") < window.recent_start).group_by(*by)
                .agg(base_compared=pl.col("n_compared").sum(),
                     base_changed=pl.col("n_changed").sum()))
        labels = groups.labels[level].with_row_index("gid")
        joined = worst.join(base, on=list(by), how="left") \
            .join(labels, on=list(by), how="inner").sort("gid")
        if level == "suite":
            joined = joined.filter(pl.Series(groups.multi_suite).gather(joined["gid"]))
        if joined.is_empty():
            continue
        n1 = joined["n_compared"].to_numpy().astype(np.float64)
        k1 = joined["n_changed"].to_numpy().astype(np.float64)
        n2 = joined["base_compared"].fill_null(0).to_numpy().astype(np.float64)
        k2 = joined["base_changed"].fill_null(0).to_numpy().astype(np.float64)
        # One-sided: more prompts changed on the worst recent day than the baseline's rate
        # explains. Bonferroni over the recent days, because the worst of them was picked.
        p_one = stats.hypergeom.sf(k1 - 1, n1 + n2, k1 + k2, n1)
        days = joined["recent_days"].to_numpy().astype(np.float64)
        p = np.where(n2 > 0, np.clip(p_one * days, 0, 1), np.nan)
        recent_c = joined["consistency"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            base_c = np.where(n2 > 0, 1 - k2 / n2, np.nan)
        bands = [band(float(x), config) for x in recent_c]
        out.append(joined.select("model_id", "suite", "prompt_id").with_columns(
            level=pl.lit(level), metric=pl.lit("consistency"), test=pl.lit("consistency"),
            statistic=pl.Series(recent_c), p_value=pl.Series(p).fill_nan(None),
            effect_size=pl.Series(base_c - recent_c).fill_nan(None),
            effect_measure=pl.lit("consistency_drop"),
            n_recent=pl.Series(n1.astype(np.int64)), n_baseline=pl.Series(n2.astype(np.int64)),
            recent_value=pl.Series(recent_c), baseline_value=pl.Series(base_c).fill_nan(None),
            min_effect=pl.lit(config.min_consistency_drop),
            consistency_band=pl.Series(bands, dtype=pl.String),
        ))
    return out, model_daily


def _adjust(tests: pl.DataFrame, config: DriftConfig) -> pl.DataFrame:
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
    k_family = family.cast(pl.Int64).sum().over("model_id")
    k_all = tested.cast(pl.Int64).sum().over("model_id")
    return tests.with_columns(
        verdict_grade=(pl.col("significant") & family
                       & (pl.col("p_value") <= config.alpha / pl.max_horizontal(k_family, 1))),
        watch_grade=(pl.col("significant")
                     & (pl.col("p_value") <= config.alpha / pl.max_horizontal(k_all, 1))),
    )


def _verdicts(
    groups: _Groups, tests: pl.DataFrame, config: DriftConfig
) -> list[dict[str, Any]]:
    frame = groups.frame
    errors = pl.col("errors").fill_null(0) if "errors" in frame.columns else pl.lit(0)
    windows = (
        frame.with_columns(answered=pl.col("rows") - errors).group_by("model_id")
        .agg(**{f"{name}_{tag}": pl.col(name).filter(pl.col("recent") == flag).sum()
                for name in ("rows", "answered", "passes", "scored")
                for tag, flag in (("recent", True), ("baseline", False))},
             suites=pl.col("suite").unique().sort())
    )
    consistency = tests.filter((pl.col("metric") == "consistency") & (pl.col("level") == "model")) \
        .select("model_id", consistency="recent_value", consistency_band="consistency_band")
    sig = tests.filter(pl.col("significant")).sort("p_adjusted")
    evidence = sig.group_by("model_id", maintain_order=True).agg(
        significant_tests=pl.len(),
        watch=pl.col("watch_grade").any(),
        drifting=(pl.col("verdict_grade") & ((pl.col("metric") != "consistency")
                                             | (pl.col("consistency_band") == DRIFTING))).any(),
        top=pl.struct(pl.all()).head(5),
    )
    rows = (windows.join(consistency, on="model_id", how="left")
            .join(evidence, on="model_id", how="left").sort("model_id"))
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
        })
    return models


def _reason(t: dict[str, Any]) -> str:
    where = " / ".join(x for x in (t["suite"], t["prompt_id"]) if x) or "all prompts"
    if t["metric"] == "pass_rate":
        change = f"pass rate {t['baseline_value']:.2f} → {t['recent_value']:.2f}"
    elif t["metric"] == "consistency":
        change = f"consistency {t['recent_value']:.0%} ({t['consistency_band']})"
    else:
        change = (f"{t['metric']} median {t['baseline_value']:.4g} → {t['recent_value']:.4g} "
                  f"(Cliff's δ {t['effect_size']:+.2f})")
    return f"{where}: {change}, adjusted p={t['p_adjusted']:.2g}"


RESULT_SCHEMA: dict[str, Any] = {**TEST_SCHEMA, "p_adjusted": pl.Float64, "bh_weight": pl.Float64,
                                 "significant": pl.Boolean, "verdict_grade": pl.Boolean,
                                 "watch_grade": pl.Boolean}


def compute_drift(
    daily: pl.DataFrame, as_of: date | None = None, config: DriftConfig | None = None
) -> DriftReport:
    """Every drift test of a night over daily summaries (``tasks.summaries.aggregate`` rows)."""
    config = config or DriftConfig()
    if as_of is None:
        if daily.is_empty():
            raise ValueError("no daily summaries and no as_of date: nothing to compare")
        as_of = daily["date"].max()  # type: ignore[assignment]
    assert as_of is not None
    window = Window.ending(as_of, config)
    empty = pl.DataFrame(schema=RESULT_SCHEMA)
    if daily.is_empty():
        return DriftReport(window, config, empty, [], pl.DataFrame())
    groups = _groups(daily, window)
    if groups.frame.is_empty():
        return DriftReport(window, config, empty, [], pl.DataFrame())
    parts = _pass_rate_tests(groups, config) + _distribution_tests(groups, config)
    consistency_parts, consistency_daily = _consistency_tests(groups, window, config)
    parts += consistency_parts
    if not parts:
        return DriftReport(window, config, empty, _verdicts(groups, empty, config),
                           consistency_daily)
    tests = pl.concat([
        p.select([pl.col(c).cast(t) if c in p.columns else pl.lit(None, t).alias(c)
                  for c, t in TEST_SCHEMA.items()]) for p in parts])
    tests = _adjust(tests, config)
    level_order = pl.col("level").replace_strict({lv: i for i, lv in enumerate(LEVELS)},
                                                 return_dtype=pl.Int8)
    tests = tests.sort(level_order, "model_id", "suite", "prompt_id", "metric", nulls_last=False)
    return DriftReport(window, config, tests, _verdicts(groups, tests, config), consistency_daily)


def config_json(config: DriftConfig) -> dict[str, Any]:
    return asdict(config)
