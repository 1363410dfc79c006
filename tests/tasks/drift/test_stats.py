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
