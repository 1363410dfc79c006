"""The night's tests per metric: the window's summaries grouped per model, suite and prompt, then
rates (pass, error, refusal), score/latency/output-length distributions, output consistency and
meaning (``semantic``, from distances the summaries stage computed) tested per group.

Longer than 400 lines: each metric's test is a short vectorised block over the same groups, and
keeping them together keeps their shared helpers private.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from tasks.drift.config import LEVELS, DriftConfig, Window
from tasks.drift.stats import (
    chi2_yates_2x2,
    code_values,
    fisher_exact_2x2,
    mann_whitney_groups,
    wilson_interval,
)
from tasks.drift.verdicts import band

# Cosine distances below this are "the same answer" (float32 rounding of identical outputs);
# a prompt answered identically every day has no spread and no semantic test (consistency covers
# temperature 0).
SAME_MEANING = 1e-4

DISTRIBUTION_METRICS = {  # metric → the summary column holding its per-row values
    "score": "score_values",
    "latency_ms": "latency_values",
    "output_len": "output_len_values",
}


@dataclass
class Groups:
    """The (model, suite, prompt) groups of the window and their model/suite parents."""

    frame: pl.DataFrame  # daily rows with pgid, sidx, midx, recent
    labels: dict[str, pl.DataFrame]  # level → gid-ordered (model_id, suite, prompt_id)
    maps: dict[str, np.ndarray]  # level → gid of each prompt group
    multi_suite: np.ndarray  # per suite gid: its model has more than one suite


def group_window(daily: pl.DataFrame, window: Window) -> Groups:
    """The window's daily rows, each flagged recent or baseline, and their groups."""
    in_window = pl.col("date").is_between(window.baseline_start, window.as_of)
    # Filtering copies every value list: skip it when the summaries are the window already.
    inside = daily.select(in_window.fill_null(False).all()).item()
    frame = daily if inside else daily.filter(in_window)
    names = ["model_id", "suite", "prompt_id"]
    # The prompt groups by hashing (one group-by with each group's row numbers), ranked among
    # themselves: the dense rank of the (model, suite, prompt) keys without ranking a struct of
    # three strings over every daily row, which took four times as long.
    found = frame.lazy().select(names).with_row_index("row").group_by(names) \
        .agg(pl.col("row")).collect()
    rank = found.select((pl.struct(names).rank("dense") - 1).cast(pl.Int64)).to_series() \
        .to_numpy()
    pgid = np.empty(frame.height, dtype=np.int64)
    pgid[found["row"].explode().to_numpy()] = np.repeat(rank, found["row"].list.len().to_numpy())
    # The coarser ids are ranked over the distinct prompt groups only (a few thousand rows
    # instead of every daily row), then carried to the rows by their prompt group.
    keys = found.select(names)[np.argsort(rank)].with_row_index("pgid").with_columns(
        pgid=pl.col("pgid").cast(pl.Int64),
        sidx=(pl.struct("model_id", "suite").rank("dense") - 1).cast(pl.Int64),
        midx=(pl.col("model_id").rank("dense") - 1).cast(pl.Int64),
    )
    # Added as whole columns: the frame's other columns keep their chunks (a chunk per day),
    # so the frame is read lazily from here on (eagerly, every operation would first copy it
    # all, value lists included, into single chunks).
    frame = frame.with_columns(recent=pl.col("date") >= window.recent_start).hstack([
        pl.Series("pgid", pgid), pl.Series("sidx", keys["sidx"].to_numpy()[pgid]),
        pl.Series("midx", keys["midx"].to_numpy()[pgid])])
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
    return Groups(frame, labels, maps, multi)


def _level_keep(groups: Groups, level: str, n: int) -> np.ndarray:
    # A model with one suite would repeat its model-level tests at suite level: skip those.
    return groups.multi_suite.copy() if level == "suite" else np.ones(n, dtype=bool)


def _frame(level: str, labels: pl.DataFrame, idx: np.ndarray, **cols: Any) -> pl.DataFrame:
    """Test rows for the groups ``idx`` of a level; array columns are aligned with ``idx``."""
    return labels[idx].with_columns(level=pl.lit(level), **{
        k: pl.Series(k, v) if isinstance(v, np.ndarray) else pl.lit(v) for k, v in cols.items()
    })


RATE_METRICS = {  # metric → (the summary column counting events, the one counting trials)
    "pass_rate": ("passes", "scored"),
    # Failed calls over all calls: availability, not quality (verdicts.AVAILABILITY_METRICS).
    "error_rate": ("errors", "rows"),
    # Refusals over answered calls (tasks/refusal.py's detector): a quality dimension.
    "refusal_rate": ("refusals", "answered"),
}


def pass_rate_tests(groups: Groups, config: DriftConfig) -> list[pl.DataFrame]:
    """Fisher or chi-square (Yates) per group on passes, with a Wilson interval."""
    return rate_tests(groups, config, "pass_rate")


def rate_tests(groups: Groups, config: DriftConfig, metric: str) -> list[pl.DataFrame]:
    """Fisher or chi-square (Yates) per group on the events of a rate (``RATE_METRICS``), with a
    Wilson interval of the recent rate. Summaries without the rate's columns (written before it
    existed) give no tests."""
    f = groups.frame
    events_col, trials_col = RATE_METRICS[metric]
    if events_col not in f.columns or trials_col not in f.columns:
        return []
    # Per prompt group and window (cell = 2 × pgid + recent) the events and trials, in one
    # pass over the rows; the coarser levels add up their prompt groups' counts (whole numbers,
    # so the sums are exact in any order).
    cell = f["pgid"].to_numpy() * 2 + f["recent"].to_numpy()
    prompts = groups.labels["prompt"].height
    per_prompt = [np.bincount(cell, weights=f[col].fill_null(0).to_numpy(),
                              minlength=2 * prompts).reshape(prompts, 2)
                  for col in (events_col, trials_col)]
    out = []
    for level in LEVELS:
        if level == "suite" and not groups.multi_suite.any():
            continue  # every suite is its model's only one: no suite-level tests
        size = groups.labels[level].height
        if level == "prompt":
            (c, a), (n2, n1) = (x.T for x in per_prompt)
        else:
            (c, a), (n2, n1) = [[np.bincount(groups.maps[level], weights=x[:, w], minlength=size)
                                 for w in (0, 1)] for x in per_prompt]
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
            metric=metric,
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
    groups: Groups, column: str, graded: bool = False
) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray], bool]:
    """A list column's values flattened, each value's window, a function spreading a per-row
    array over the values (the rows' groups, level by level), and whether the column holds
    integers; no values when ``graded`` asks for a value other than 0 and 1 and there is none
    (checked before anything is spread over the values)."""
    lists = groups.frame[column]
    inner = lists.dtype.inner if isinstance(lists.dtype, pl.List) else None
    integral = inner is not None and inner.is_integer()
    lengths = lists.list.len().fill_null(0).to_numpy()
    values = lists.explode(keep_nulls=False, empty_as_null=False).cast(pl.Float64).to_numpy()
    # Counted, not masked: three passes over the values instead of six.
    if graded and (np.count_nonzero(values == 0) + np.count_nonzero(values == 1)
                   + np.count_nonzero(np.isnan(values))) == values.size:
        values = values[:0]
    nan = np.isnan(values)
    ok = None if not nan.any() else ~nan

    def spread(per_row: np.ndarray) -> np.ndarray:
        out = np.repeat(per_row, lengths) if values.size else per_row[:0]
        return out if ok is None else out[ok]

    recent = spread(groups.frame["recent"].to_numpy())
    return (values if ok is None else values[ok]), recent, spread, integral


def _metric_tests(groups: Groups, config: DriftConfig, metric: str) -> list[pl.DataFrame]:
    column = DISTRIBUTION_METRICS[metric]
    if column not in groups.frame.columns:
        return []
    # 0/1 scores repeat the pass-rate test: testing them twice only spends alpha.
    values, recent, spread, integral = _flat_values(groups, column, graded=metric == "score")
    if values.size == 0:
        return []
    # Scores other than 0 and 1 (only the score metric asks).
    graded_rows = (values != 0) & (values != 1) if metric == "score" else None
    coded = code_values(values, recent, integral or None)
    row_pgid = groups.frame["pgid"].to_numpy()
    out = []
    for level in LEVELS:
        if level == "suite" and not groups.multi_suite.any():
            continue
        size = groups.labels[level].height
        # Each value's group, spread from its row's: 32-bit (half the memory to fill).
        gid = spread(groups.maps[level][row_pgid].astype(np.int32 if size < 2**31 else np.int64))
        mw = mann_whitney_groups(gid, recent, values, size, coded)
        keep = (_level_keep(groups, level, size) & (mw.n_recent >= config.min_test_n)
                & (mw.n_baseline >= config.min_test_n) & (mw.sigma > 0))
        if graded_rows is not None:
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


def distribution_tests(groups: Groups, config: DriftConfig) -> list[pl.DataFrame]:
    """Mann–Whitney U with Cliff's delta per group, for score, latency and output length."""
    return [frame for metric in DISTRIBUTION_METRICS
            for frame in _metric_tests(groups, config, metric)]


def prompt_changes(
    daily: pl.DataFrame, prompt: Sequence[str] | None = None, carry: Sequence[str] | None = None
) -> pl.DataFrame:
    """Per prompt × day: whether its set of output hashes differs from the previous day's.

    Only days whose previous day has outputs for the prompt appear. The aggregation stores the
    hashes sorted and unique, so equal sets are equal lists. ``prompt`` names the columns that
    identify a prompt (an integer id is faster than three strings); ``carry`` the columns kept
    beside it (default: the model, suite and prompt names not in ``prompt``).
    """
    prompt = list(prompt or ("model_id", "suite", "prompt_id"))
    carry = [c for c in ("model_id", "suite", "prompt_id") if c not in prompt] \
        if carry is None else list(carry)
    order: list[pl.Expr | str] = [*prompt, "date"]
    if len(prompt) == 1 and daily.schema[prompt[0]].is_integer() \
            and daily.schema["date"] == pl.Date and not daily.is_empty():
        ids = daily[prompt[0]]
        low, high = ids.min(), ids.max()
        if low is not None and low >= 0 and high < 2**31:
            # One int64 key (id, day) sorts four times faster than the two columns; the day
            # is shifted to be non-negative, so the key orders as (id, date) does.
            order = [pl.col(prompt[0]).cast(pl.Int64) * 2**32
                     + pl.col("date").cast(pl.Int64) + 2**31]
    return (
        # Lazy, so the filter copies only the columns used here, not every value list.
        daily.lazy().filter(pl.col("output_hashes").list.len() > 0)
        .select(*prompt, *carry, "date", outputs=pl.col("output_hashes").hash())
        .sort(order)
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


def consistency_tests(
    groups: Groups, window: Window, config: DriftConfig
) -> tuple[list[pl.DataFrame], pl.DataFrame]:
    """The worst recent day's consistency per model and suite against the baseline's
    day-over-day change rate; also each model's consistency per day."""
    frame = groups.frame
    if "output_hashes" not in frame.columns or frame.is_empty():
        return [], pl.DataFrame()
    # Integer ids through the sort and the group-by; the names are attached to the per-day
    # counts afterwards (moving three string columns through the sort cost more than the rest).
    changes = prompt_changes(frame, ["pgid"], carry=["midx", "sidx"])
    out = []
    model_daily = pl.DataFrame()
    for level, by, ids in (("model", ("model_id",), "midx"),
                           ("suite", ("model_id", "suite"), "sidx")):
        if level == "suite" and not groups.multi_suite.any():
            continue
        per_id = daily_consistency(changes, (ids,), changes)
        names = groups.labels[level].select(by)[per_id[ids].to_numpy()]
        per_day = pl.concat([names, per_id.drop(ids)], how="horizontal").sort(*by, "date")
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


def semantic_tests(
    groups: Groups, window: Window, distances: pl.DataFrame | None, config: DriftConfig
) -> list[pl.DataFrame]:
    """Meaning drift (``tasks.drift.semantic``): per prompt, the worst recent day's distance to
    the baseline centroid against the baseline days' leave-one-out distances; per suite and model
    the same on a per-day statistic of the prompts' standard scores (the cube root of their mean
    square; a prompt's log distance against its baseline days), so that every level tests days,
    not pooled prompt-days.

    One-sided (answers moved away from what they meant), a Student-t prediction interval for one
    new day from the baseline days' mean and spread, Bonferroni over the recent days because the
    worst of them was picked (as the consistency test does). The worst day, not the window's
    median: a change that began on the window's fifth day leaves three normal days in it."""
    if distances is None or distances.is_empty():
        return []
    prompts = groups.labels["prompt"].with_row_index("pgid").with_columns(
        pl.col("pgid").cast(pl.Int64))
    d = (distances.filter(pl.col("date").is_between(window.baseline_start, window.as_of)
                          & pl.col("distance").is_not_nan() & pl.col("distance").is_not_null())
         .join(prompts, on=["model_id", "suite", "prompt_id"], how="inner")
         .with_columns(recent=pl.col("date") >= window.recent_start))
    if d.is_empty():
        return []
    # Distances are skewed to the right (a day whose few samples all took a rare wording):
    # their logarithm is close enough to normal for the t interval (docs/drift.md, measured).
    x = pl.col("distance").clip(SAME_MEANING).log()
    base = ~pl.col("recent")
    n = base.cast(pl.Float64).sum().over("pgid")
    s1 = x.filter(base).sum().over("pgid")
    s2 = (x * x).filter(base).sum().over("pgid")
    # A day's standard score against its prompt's baseline days, leaving a baseline day out of
    # its own mean and spread (so that baseline and recent days are out-of-sample alike).
    n_o = pl.when(base).then(n - 1).otherwise(n)
    m_o = pl.when(base).then((s1 - x) / n_o).otherwise(s1 / n_o)
    ss_o = pl.when(base).then(s2 - x * x).otherwise(s2)
    var_o = (ss_o - n_o * m_o * m_o) / (n_o - 1)
    d = d.with_columns(value=x, z2=((x - m_o) ** 2 / var_o))
    pgid = d["pgid"].to_numpy()
    out = []
    for level in LEVELS:
        if level == "suite" and not groups.multi_suite.any():
            continue
        if level == "prompt":
            days = d.select(gid="pgid", date="date", recent="recent", value="value",
                            shown="distance")
        else:
            # Per day, the cube root of the prompts' mean squared standard score (chi-square
            # over its degrees of freedom; its cube root is close to normal, Wilson–Hilferty):
            # every prompt weighs by its own noise, and a few prompts changing meaning stand out
            # of many calm ones, which a mean of distances would dilute.
            days = (d.with_columns(gid=pl.Series(groups.maps[level][pgid]))
                    .filter(pl.col("z2").is_finite())
                    .group_by("gid", "date")
                    .agg(pl.col("recent").first(), value=pl.col("z2").mean().pow(1 / 3),
                         shown=pl.col("distance").mean())
                    .drop_nulls("value"))
        base = days.filter(~pl.col("recent")).group_by("gid").agg(
            n_b=pl.len(), mean_b=pl.col("value").mean(), sd_b=pl.col("value").std(),
            shown_b=pl.col("shown").mean())
        worst = (days.filter(pl.col("recent")).sort("value", descending=True)
                 .group_by("gid").agg(n_r=pl.len(), max_r=pl.col("value").first(),
                                      shown_r=pl.col("shown").first()))
        joined = worst.join(base, on="gid", how="inner").filter(
            (pl.col("n_b") >= config.min_test_n) & (pl.col("sd_b") > 0)).sort("gid")
        size = groups.labels[level].height
        idx = joined["gid"].to_numpy().astype(np.int64)
        idx_keep = _level_keep(groups, level, size)[idx]
        joined, idx = joined.filter(pl.Series(idx_keep)), idx[idx_keep]
        if idx.size == 0:
            continue
        n_b = joined["n_b"].to_numpy().astype(np.float64)
        n_r = joined["n_r"].to_numpy().astype(np.float64)
        z = ((joined["max_r"] - joined["mean_b"]) / joined["sd_b"]).to_numpy()
        t = z / np.sqrt(1 + 1 / n_b)
        p = np.clip(stats.t.sf(t, n_b - 1) * n_r, 0, 1)
        out.append(_frame(
            level, groups.labels[level], idx,
            metric="semantic", test="worst_day_t", statistic=t, p_value=p, effect_size=z,
            effect_measure="standard_score",
            n_recent=n_r.astype(np.int64), n_baseline=n_b.astype(np.int64),
            recent_value=joined["shown_r"].to_numpy(), baseline_value=joined["shown_b"].to_numpy(),
            min_effect=config.min_semantic_score,
        ))
    return out
