"""The vectorised statistical kernels of the drift stage: every group's test in one numpy pass.

Pure numpy/scipy (polars only as a hash map in ``dense_rank`` and for its faster sort); no
summary frames, no verdicts.

Longer than 400 lines: Mann–Whitney has three exact paths (a count table, small groups sorted
row by row, one sort of packed keys) chosen by the data's shape, and they share the value codes
and the rank-sum arithmetic kept private here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import special, stats


def _log_comb(
    n: np.ndarray, k: np.ndarray, log_factorial: np.ndarray | None = None
) -> np.ndarray:
    """log C(n, k); from a table of ``gammaln(m + 1)`` when given (the same floats, looked up
    instead of computed on every cell of a grid)."""
    if log_factorial is not None:
        return log_factorial[n] - log_factorial[k] - log_factorial[n - k]
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)


# Largest table total whose log-factorials are tabulated (8 bytes each).
_LOG_FACTORIAL_TABLE = 1 << 22


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
    top = int(n.max())
    lf = special.gammaln(np.arange(top + 1) + 1) if top <= _LOG_FACTORIAL_TABLE else None
    # Bound the (tables × support) grid so one huge table cannot exhaust memory.
    order = np.argsort(span, kind="stable")
    start = 0
    while start < order.size:
        stop = start
        if start == 0 and order.size * int(span.max()) <= 4_000_000:
            stop = order.size  # every table in one grid (what the loop below would find)
        while stop < order.size and (stop - start + 1) * int(span[order[stop]]) <= 4_000_000:
            stop += 1
        stop = max(stop, start + 1)
        idx = order[start:stop]
        width = int(span[idx].max())
        k = lo[idx, None] + np.arange(width)[None, :]
        valid = k <= hi[idx, None]
        kk = np.where(valid, k, lo[idx, None])
        log_denominator = _log_comb(n[idx], r1[idx], lf)[:, None]
        logp = _log_comb(c1[idx, None], kk, lf) + _log_comb(
            n[idx, None] - c1[idx, None], r1[idx, None] - kk, lf) - log_denominator
        log_obs = (_log_comb(c1[idx], a[idx], lf)
                   + _log_comb(n[idx] - c1[idx], r1[idx] - a[idx], lf) - log_denominator[:, 0])
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
    # value's rank by hashing into them: no argsort and no scatter of the whole array. Polars'
    # sort (one thread) is ~2x numpy's here.
    sorted_values = _sorted(values)
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


# Decimal places tried by ``value_codes``: latencies are recorded to 0.1 ms (round(x, 1)).
_DECIMAL_SCALES = (1.0, 10.0, 100.0, 1000.0)


def value_codes(
    values: np.ndarray, integral: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Dense 0-based integer codes preserving the values' order and ties, and the value of each
    code (``levels[codes] == values``): what the Mann–Whitney kernels need, without a sort when
    the values are whole numbers or decimals with few places (a latency of 600.3 ms gets the
    code 10 × 600.3 − low, then its place among the codes present).

    A scale ``s`` is used only when every value ``v`` equals ``rint(v·s)/s`` exactly: then
    ``rint(v·s)`` is a strictly increasing function of the values (rounding is monotone, and two
    values with the same code would both equal code/s), so ranks, ties and medians come out as
    with ``dense_rank``, and a code's value is ``(code + low)/s``. Anything else (NaN,
    infinities, finer fractions, codes too far apart to renumber cheaply) gets ``dense_rank``.
    ``integral`` says the values are known to be whole numbers (an integer column).
    """
    values = np.asarray(values, dtype=np.float64)
    raw, renumber, levels = _raw_codes(values, integral)
    return (raw if renumber is None else renumber[raw]), levels


def _raw_codes(
    values: np.ndarray, integral: bool | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``value_codes`` before renumbering: the codes, their renumbering (None when they are
    dense already) and the levels."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), None, np.zeros(0)
    head = values[:1000]  # a cheap look first: most columns fail here or not at all
    scales = (1.0,) if integral else _DECIMAL_SCALES if integral is None else ()
    for scale in scales:
        if integral:
            scaled = values
        else:
            if not np.array_equal(np.rint(head * scale) / scale, head):
                continue
            scaled = values * scale
            np.rint(scaled, out=scaled)
            if not np.array_equal(scaled / scale, values):
                continue
        low, high = scaled.min(), scaled.max()
        # Renumbered through a mark per possible code: only for a span no larger than the
        # values (False for infinities: inf or nan).
        if high - low < max(values.size, 1 << 16):
            span = int(high - low) + 1
            # int64: numpy copies any other index type to it before a scatter or gather.
            raw = np.subtract(scaled, low, out=None if scaled is values else scaled) \
                .astype(np.int64)
            present = np.zeros(span, dtype=bool)
            present[raw] = True
            # The codes present are the levels; ``c + low`` is exactly the whole number that
            # was divided by the scale in the check above.
            levels = (np.flatnonzero(present) + low) / scale
            if levels.size == span:
                return raw, None, levels
            renumber = np.cumsum(present, dtype=raw.dtype)
            renumber -= 1
            return raw, renumber, levels
        break
    codes = dense_rank(values, False)
    levels = np.empty(int(codes.max()) + 1)
    levels[codes] = values
    return codes, None, levels


@dataclass(frozen=True)
class Coded:
    """Values as the Mann–Whitney kernels take them (``code_values``): the value of each code,
    and the keys ``code × 2 + recent`` (int32 when they fit) that every grouping of the same
    values shares."""

    levels: np.ndarray
    keys: np.ndarray


def code_values(values: np.ndarray, recent: np.ndarray, integral: bool | None = None) -> Coded:
    """``value_codes`` of the values, with each value's window in the keys' last bit."""
    raw, renumber, levels = _raw_codes(np.asarray(values, dtype=np.float64), integral)
    dtype = np.int32 if 2 * levels.size < 2**31 else np.int64
    if renumber is None:
        keys = raw.astype(dtype)
        keys <<= 1
    else:  # renumbered and shifted in one gather
        keys = (renumber.astype(dtype) << 1)[raw]
    keys |= np.asarray(recent, dtype=bool)
    return Coded(levels, keys)


def _sorted(values: np.ndarray) -> np.ndarray:
    """``np.sort(values)``, by Polars on one thread: the same array, in half numpy's time (the
    other core is someone else's on a loaded machine)."""
    return pl.Series(values).sort(multithreaded=False).to_numpy()


def mann_whitney_groups(
    gid: np.ndarray, recent: np.ndarray, values: np.ndarray, n_groups: int,
    coded: Coded | None = None,
) -> MannWhitney:
    """Mann–Whitney U of recent vs baseline values within every group, all groups at once (a
    count table, small groups sorted row by row, or one sort of packed keys: the same floats).

    ``gid`` names each value's group (0..n_groups-1), ``recent`` is True for the recent window;
    ``coded`` (``code_values`` of the values and windows) may be passed when several groupings
    share them.
    Average ranks for ties, tie-corrected variance and a continuity correction: the p-values
    equal ``scipy.stats.mannwhitneyu(x, y, method="asymptotic")`` group by group.
    """
    gid = np.asarray(gid)
    if gid.dtype.kind not in "iu":
        gid = gid.astype(np.int64)
    coded = code_values(values, recent) if coded is None else coded
    n = coded.keys.size
    if n == 0:
        z = np.zeros(n_groups)
        nan = np.full(n_groups, np.nan)
        return MannWhitney(z.copy(), z.copy(), z, np.ones(n_groups), z, z, nan, nan)
    span = coded.levels.size
    levels = coded.levels
    # Counting costs a pass over the (group × value × window) table, sorting a pass over the
    # values: count while the table is no bigger than the values (and always for small inputs).
    cells = n_groups * span
    if cells <= _COUNTING_CELLS and 2 * cells <= max(n, _SMALL_TABLE):
        return _mann_whitney_counting(gid, coded, n_groups)
    # The values sorted within their groups, as keys (value code, window) in group order:
    # row by row in a (group × largest group) table when the groups are small, else one sort
    # of packed integer keys (group, value code, window) instead of an argsort and gathers.
    # The sorted keys alone carry the tie runs and the window of each value.
    segmented = _segmented_sort(gid, coded.keys, span, n_groups)
    if segmented is not None:
        key, bounds = segmented
    else:
        key = _sorted(_packed_keys(gid, coded.keys, span, n_groups))
        bounds = np.searchsorted(key, np.arange(n_groups + 1, dtype=key.dtype) * (2 * span))
    # The positions of the recent values: a recent value sorts after the baseline values it
    # ties with (the window is the key's last bit).
    recent_at = np.flatnonzero((key & 1).astype(bool))  # nonzero is 4x faster on bools
    recent_bounds = np.searchsorted(recent_at, bounds)
    start = bounds[:-1]
    counts = np.diff(bounds).astype(np.float64)
    n1 = np.diff(recent_bounds).astype(np.float64)
    n2 = counts - n1
    # Rank sum of the recent values: their 1-based positions (summed exactly in integers),
    # shifted by the group's start, plus each tie run's correction from positions to the run's
    # average rank. Only runs of two or more need one, and they are few.
    position_sum = np.zeros(recent_at.size + 1, dtype=np.int64)
    np.cumsum(recent_at, out=position_sum[1:])
    position_sum[1:] += np.arange(1, recent_at.size + 1)
    r1 = (np.diff(position_sum[recent_bounds]) - n1 * start).astype(np.float64)
    run_first, run_len, k = _tie_runs(key, bounds)
    run_group = np.searchsorted(bounds, run_first, side="right") - 1
    run_len = run_len.astype(np.float64)
    # A run of L values whose last k are recent: their positions average first + L - (k-1)/2,
    # their ranks first + (L+1)/2, so the rank sum moves by k(k-L)/2.
    r1 += np.bincount(run_group, weights=k * (k - run_len) / 2.0, minlength=n_groups)
    ties = np.bincount(run_group, weights=run_len * run_len * run_len - run_len,
                       minlength=n_groups)
    u1 = r1 - n1 * (n1 + 1) / 2.0
    p, delta, sigma = _normal_approximation(n1, n2, u1, ties, n1 + n2)
    # The b-th baseline value sits after every recent value with at most b baseline values
    # before it: its position needs no list of baseline positions.
    baseline_before = recent_at - np.arange(recent_at.size)

    def baseline_at(b: np.ndarray) -> np.ndarray:
        return b + np.searchsorted(baseline_before, b, side="right")

    medians = [_sorted_medians(pick, key, span, levels, per, n_groups)
               for pick, per in ((recent_at.__getitem__, n1), (baseline_at, n2))]
    return MannWhitney(n1, n2, u1, p, np.nan_to_num(delta), sigma, medians[0], medians[1])


def _tie_runs(
    key: np.ndarray, bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First position, length and number of recent values of every run of two or more equal
    values within a group, in the sorted keys ``key`` (value code × 2 + window, maybe with the
    group above them) whose groups start at ``bounds``."""
    same = np.flatnonzero((key[1:] ^ key[:-1]) <= 1)  # i and i + 1 share a value
    if same.size:
        group_start = np.zeros(key.size + 1, dtype=bool)
        group_start[bounds] = True
        same = same[~group_start[same + 1]]  # equal values of two groups are no tie
    if same.size == 0:
        return same, same, same
    begins = np.empty(same.size, dtype=bool)
    begins[0] = True
    np.not_equal(same[1:], same[:-1] + 1, out=begins[1:])
    first_of = np.flatnonzero(begins)
    last = np.append(same[first_of[1:] - 1], same[-1])
    first = same[first_of]
    # The run's first value's window, plus the windows of the values tied to their left.
    recent = np.bincount(np.cumsum(begins) - 1, weights=key[same + 1] & 1,
                         minlength=first.size) + (key[first] & 1)
    return first, last - first + 2, recent


# The segmented sort's largest group: numpy sorts rows of up to a few thousand int32 keys in
# cache, many times faster per key than one sort of all the keys.
_SEGMENT_WIDTH = 2048


def _segmented_sort(
    gid: np.ndarray, keys: np.ndarray, span: int, n_groups: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Every group's ``keys`` (value code × 2 + recent) sorted, concatenated in group order, and the
    groups' bounds; None when a (group × largest group) table would be too wide or mostly
    padding, or the values do not come in runs of one group (a daily row's values share it)."""
    n = gid.size
    run_start = np.flatnonzero(np.concatenate(([True], gid[1:] != gid[:-1])))
    if run_start.size > n // 2:
        return None
    run_len = np.diff(np.append(run_start, n))
    run_gid = gid[run_start].astype(np.int64)
    sizes = np.bincount(run_gid, weights=run_len, minlength=n_groups).astype(np.int64)
    width = int(sizes.max())
    if width > _SEGMENT_WIDTH or n_groups * width > 2 * n + _SMALL_TABLE:
        return None
    # Each run's first column in its group's row: the group's earlier runs' lengths.
    order = np.argsort(run_gid, kind="stable")
    group_start = np.cumsum(sizes) - sizes
    column = np.empty(run_start.size, dtype=np.int64)
    column[order] = np.cumsum(run_len[order]) - run_len[order] - group_start[run_gid[order]]
    table = np.full(n_groups * width, 2 * span, dtype=keys.dtype)  # padding sorts last
    table[_ramp(run_start, run_gid * width + column - run_start, n)] = keys
    table = table.reshape(n_groups, width)
    table.sort(axis=1)
    filled = sizes > 0
    row_start = np.arange(n_groups, dtype=np.int64) * width
    back = _ramp(group_start[filled], (row_start - group_start)[filled], n)
    return table.ravel()[back], np.append(group_start, n)


def _ramp(starts: np.ndarray, offsets: np.ndarray, n: int) -> np.ndarray:
    """``i + offsets[j]`` for every position ``i`` of the segment ``j`` that begins at
    ``starts[j]`` (increasing, the first 0, segments covering 0..n-1): a running sum of steps,
    one array instead of an arange, a repeat and their sum."""
    step = np.ones(n, dtype=np.int64)
    step[0] = offsets[0]
    step[starts[1:]] += np.diff(offsets)
    return np.cumsum(step, out=step)


def _packed_keys(
    gid: np.ndarray, keys: np.ndarray, span: int, n_groups: int, wide: bool = False
) -> np.ndarray:
    """``gid × 2·span + keys`` built in place in one array, 32-bit when every key fits (half the
    bytes to write and to sort) unless ``wide`` (np.bincount would copy them to 64 bits)."""
    key = gid.astype(np.int32 if n_groups * span * 2 < 2**31 and not wide else np.int64)
    key *= 2 * span
    np.add(key, keys, out=key, casting="unsafe")
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


def _mann_whitney_counting(gid: np.ndarray, coded: Coded, n_groups: int) -> MannWhitney:
    # One count of (group, value, window) cells instead of two masked copies of the values.
    span = coded.levels.size
    cell = _packed_keys(gid, coded.keys, span, n_groups, wide=True)
    size = n_groups * span * 2
    both = np.bincount(cell, minlength=size).reshape(n_groups, span, 2).astype(np.float64)
    rec, base = both[:, :, 1], both[:, :, 0]
    n1, n2 = rec.sum(axis=1), base.sum(axis=1)
    u1, ties, total = _u_from_tables(rec, base, n1, n2)
    levels = coded.levels
    p, delta, sigma = _normal_approximation(n1, n2, u1, ties, total)
    return MannWhitney(n1, n2, u1, p, np.nan_to_num(delta), sigma,
                       _table_medians(rec, n1, levels), _table_medians(base, n2, levels))


def _sorted_medians(pick: Callable[[np.ndarray], np.ndarray], key: np.ndarray, span: int,
                    levels: np.ndarray, per_group: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group medians of one window's values in the sorted packed ``key``: ``pick`` maps the
    window's i-th value (in sorted order) to its position in ``key``; a code's value is
    ``levels[code]``."""
    out = np.full(n_groups, np.nan)
    counts = per_group.astype(np.int64)
    has = counts > 0
    if not has.any():
        return out
    starts = np.cumsum(counts) - counts
    lo = pick(starts[has] + (counts[has] - 1) // 2)
    hi = pick(starts[has] + counts[has] // 2)
    out[has] = (levels[(key[lo] >> 1) % span] + levels[(key[hi] >> 1) % span]) / 2.0
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
