"""The vectorised drift statistics against scipy, group by group."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tasks.drift.stats import (
    benjamini_hochberg,
    chi2_yates_2x2,
    dense_rank,
    fisher_exact_2x2,
    mann_whitney_groups,
    value_codes,
    wilson_interval,
)


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
    assert dense_rank(np.array([0.0, -0.0, 1.5, 1.5, -2.0])).tolist() == [1, 1, 2, 2, 0]
    # NaNs sort last, each its own rank (as an argsort would place them).
    assert dense_rank(np.array([1.0, np.nan, 0.5, np.nan])).tolist() == [1, 2, 0, 3]
    assert dense_rank(np.array([3.0, 1.0, 3.0]), integral=True).tolist() == [2, 0, 2]


@pytest.mark.parametrize(
    "kind", ["integers", "tenths", "thousandths", "fine", "wide", "odd", "infinite"])
def test_value_codes_order_values_as_dense_rank_does(kind: str) -> None:
    rng = np.random.default_rng(12)
    x = rng.normal(600, 200, 5000)
    values = {
        "integers": np.round(x), "tenths": np.round(x, 1), "thousandths": np.round(x, 3),
        "fine": x,  # no decimal scale fits: dense_rank's sort
        "wide": np.round(x, 1) * 1e7,  # whole numbers too far apart for 31-bit codes
        # Finer fractions, signed zeros and infinities after a head of tenths: the full check
        # must catch them.
        "odd": np.concatenate([np.round(x, 1), [0.0, -0.0, 0.05, 0.1, 600.123, 600.12]]),
        "infinite": np.concatenate([np.round(x, 1), [0.0, -0.0, np.inf, -np.inf, np.nan]]),
    }[kind]
    codes, levels = value_codes(values)
    # The dense ranks of the values, ties equal (one NaN here: np.unique's rank is exact), and
    # each code's value.
    assert np.array_equal(codes, np.unique(values, return_inverse=True)[1])
    assert np.array_equal(levels[codes], values, equal_nan=True)
    if kind in ("integers", "wide"):  # an integer column: whole numbers without the check
        for got, want in zip(value_codes(values, integral=True), (codes, levels), strict=True):
            assert np.array_equal(got, want)


def _row_values(
    rng: np.random.Generator, groups: int, days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values laid out as the daily summaries give them: a day's rows in group order, each row
    a few values of one group; some groups absent, some values equal across groups."""
    gid, recent, values = [], [], []
    for day in range(days):
        for g in range(groups):
            if g % 7 == 3 or (g == groups - 1):
                continue  # groups without values, in the middle and at the end
            k = int(rng.integers(0, 6))
            gid += [g] * k
            recent += [day >= days - 3] * k
            shift = 0.3 * (g % 3) * (day >= days - 3)
            x = np.round(rng.normal(size=k) + shift, 1)
            # Even groups end at 1.0 and odd ones start there: sorted group by group, equal
            # values meet at the bounds, and are no tie.
            values += list(np.minimum(x, 1.0) if g % 2 == 0 else np.maximum(x, 1.0))
    values_a = np.array(values)
    values_a[:40] = -0.0
    return np.array(gid), np.array(recent), values_a


@pytest.mark.parametrize("path", ["segmented", "sort"])
def test_mann_whitney_on_daily_rows_matches_scipy(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.drift.stats

    monkeypatch.setattr(tasks.drift.stats, "_COUNTING_CELLS", 0)
    if path == "sort":  # no group fits a table row: one sort of all the keys
        monkeypatch.setattr(tasks.drift.stats, "_SEGMENT_WIDTH", 0)
    rng = np.random.default_rng(11)
    groups = 60
    gid, recent, values = _row_values(rng, groups, days=20)
    mw = mann_whitney_groups(gid, recent, values, groups)
    tested = 0
    for g in range(groups):
        x, y = values[(gid == g) & recent], values[(gid == g) & ~recent]
        assert (mw.n_recent[g], mw.n_baseline[g]) == (len(x), len(y))
        if len(x) == 0 or len(y) == 0:
            assert mw.p_value[g] == 1.0
            continue
        ref = stats.mannwhitneyu(x, y, method="asymptotic")
        assert mw.u_recent[g] == ref.statistic
        assert mw.p_value[g] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
        assert (mw.median_recent[g], mw.median_baseline[g]) == (np.median(x), np.median(y))
        tested += 1
    assert tested > 40


def test_mann_whitney_paths_agree_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The count table, the row-by-row table and the one sort give the same floats."""
    import tasks.drift.stats

    rng = np.random.default_rng(13)
    groups = 40
    gid, recent, values = _row_values(rng, groups, days=30)
    results = []
    for cells, width in ((10**9, 2048), (0, 2048), (0, 0)):
        monkeypatch.setattr(tasks.drift.stats, "_COUNTING_CELLS", cells)
        monkeypatch.setattr(tasks.drift.stats, "_SEGMENT_WIDTH", width)
        results.append(mann_whitney_groups(gid, recent, values, groups))
    for other in results[1:]:
        for name in ("n_recent", "n_baseline", "u_recent", "p_value", "cliffs_delta", "sigma",
                     "median_recent", "median_baseline"):
            assert np.array_equal(getattr(results[0], name), getattr(other, name),
                                  equal_nan=True), name


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
