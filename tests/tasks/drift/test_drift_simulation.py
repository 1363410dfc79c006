"""The drift stage on simulated histories with known truth: false-positive rate and power.

Each simulated model answers ``PROMPTS`` prompts, 3 samples per prompt per day, for 35 days (a
7-day recent window after a 28-day baseline), with realistic noise: per-prompt difficulty,
day-to-day provider load on latency, occasional non-deterministic outputs. One night holds
``MODELS`` models of each scenario together (so the Benjamini–Hochberg family is as large as a
busy real night). Run ``python -m tests.tasks.drift.test_drift_simulation [nights]`` for the
table in docs/drift.md (``... test_drift_simulation dims [nights]`` for the issue-12 scenarios:
outage, refusals, a tenth of the prompts changing, meaning at temperature 0.7).

Longer than 400 lines: every scenario shares the one simulator and its night, and the docs'
tables are printed from here.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as datetime_time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from tasks import embeddings
from tasks.drift.changepoint import change_points
from tasks.drift.config import EVIDENCE_PROJECT, DriftConfig, Window
from tasks.drift.report import compute_drift
from tasks.drift.semantic import SemanticInput
from tasks.drift.stats import wilson_interval
from tasks.drift.verdicts import DRIFTING, WATCH
from tasks.records.io import write_records
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import aggregate_changed, read_daily
from tasks.summaries.embedding import semantic_input, window_distances
from tasks.summaries.publish import drift_json_bytes, history_frames
from tests.support.helpers import record

PROMPTS = 150
SAMPLES = 3
DAYS = 35
MODELS = 200
AS_OF = date(2026, 11, 30)
SCENARIOS = ("none", "pass_rate", "outputs", "latency")


def _lists(values: np.ndarray, width: int) -> pl.Series:
    offsets = pa.array(np.arange(0, values.size + 1, width, dtype=np.int32))
    return pl.Series(pa.ListArray.from_arrays(offsets, pa.array(values)))


def simulate(scenario: str, models: int, seed: int, prompts: int | None = None) -> pl.DataFrame:
    """Daily summaries (the drift stage's input) of ``models`` simulated models."""
    rng = np.random.default_rng(seed)
    prompts = prompts or PROMPTS
    shape = (models, prompts, DAYS, SAMPLES)
    day = np.arange(DAYS)[None, None, :, None]
    recent = day >= DAYS - 7
    # Baseline: pass rate 0.9 on every prompt (Bernoulli per sample).
    p_pass = np.full((models, prompts, 1, 1), 0.90)
    if scenario == "pass_rate":
        hit = np.zeros((models, prompts, 1, 1), dtype=bool)
        hit[:, : prompts // 5] = True  # a fifth of the prompts
        p_pass = np.where(hit & recent, 0.75, p_pass)
    # Failed calls (1 %; 60 % on one recent day in the outage scenario) and refusals of the
    # answered calls (2 %; 15 % over the recent window in the refusals scenario), drawn apart
    # from the passes so that each scenario moves one dimension only.
    p_error = np.full((models, 1, DAYS, 1), 0.01)
    if scenario == "outage":
        outage_day = rng.integers(DAYS - 7, DAYS, models)
        p_error[np.arange(models), 0, outage_day, 0] = 0.60
    failed = rng.random(shape) < p_error
    p_refusal = np.where(recent, 0.15, 0.02) if scenario == "refusals" else 0.02
    refused = ~failed & (rng.random(shape) < p_refusal)
    passed = ~failed & (rng.random(shape) < p_pass)
    # Latency: log-normal per prompt, a shared daily load factor, per-call noise.
    mu = np.log(600) + rng.normal(0, 0.3, (models, prompts, 1, 1))
    load = rng.normal(0, 0.05, (models, 1, DAYS, 1))
    latency = np.exp(mu + load + rng.normal(0, 0.25, shape))
    if scenario == "latency":
        latency = np.where(recent, latency * 1.5, latency)
    # Output length: fixed per (prompt, sample) at temperature 0.
    length = np.broadcast_to(rng.integers(20, 400, (models, prompts, 1, SAMPLES)), shape)
    # Output versions: a prompt's output changes on a day with probability 1 % (provider
    # non-determinism); in the outputs scenario 30 % of prompts change on one recent day.
    flips = rng.random((models, prompts, DAYS)) < 0.01
    if scenario in ("outputs", "outputs10"):
        change_day = rng.integers(DAYS - 7, DAYS, models)
        share = 0.3 if scenario == "outputs" else 0.1
        chosen = np.argsort(rng.random((models, prompts)), axis=1) < round(share * prompts)
        flips[np.arange(models)[:, None], np.arange(prompts)[None, :],
              change_day[:, None]] |= chosen
    version = np.cumsum(flips, axis=2)
    n_groups = models * prompts * DAYS
    model_idx, prompt_idx, day_idx = (a.ravel() for a in np.indices((models, prompts, DAYS)))
    passes = passed.sum(axis=3).ravel()
    first = np.datetime64(AS_OF - timedelta(days=DAYS - 1), "D")
    return pl.DataFrame({
        "date": first + day_idx,
        "model_id": pl.Series(model_idx).cast(pl.String).str.zfill(4),
        "suite": np.full(n_groups, "sim"),
        "prompt_id": pl.Series(prompt_idx).cast(pl.String),
        "rows": np.full(n_groups, SAMPLES, dtype=np.int64),
        "errors": failed.sum(axis=3).ravel().astype(np.int64),
        "answered": (SAMPLES - failed.sum(axis=3)).ravel().astype(np.int64),
        "refusals": refused.sum(axis=3).ravel().astype(np.int64),
        "top_error": pl.Series(np.where(failed.any(axis=3).ravel(), "HTTP 503", "")) \
        .replace("", None),
        "top_error_count": failed.sum(axis=3).ravel().astype(np.int64),
        "scored": (SAMPLES - failed.sum(axis=3)).ravel().astype(np.int64),
        "passes": passes.astype(np.int64),
        "latency_values": _lists(latency.ravel(), SAMPLES),
        "score_values": _lists(passed.ravel().astype(np.float64), SAMPLES),
        "output_len_values": _lists(length.ravel().astype(np.int32), SAMPLES),
        "output_hashes": pl.Series((version.ravel() * 1_000_003 + prompt_idx).astype(np.int64))
        .cast(pl.String).reshape((n_groups, 1)).arr.to_list(),
    }).with_columns(model_id=pl.lit(f"sim-{scenario}/m") + pl.col("model_id"))


def night(scenarios: tuple[str, ...], models: int, seed: int, prompts: int | None = None,
          config: DriftConfig | None = None) -> dict[str, dict[str, float]]:
    """One night with ``models`` models per scenario: per scenario, the share of models called
    drifting, called watch, and the share BH alone (without the per-model guard) would flag."""
    daily = pl.concat([simulate(s, models, seed * 100 + i, prompts)
                       for i, s in enumerate(scenarios)])
    report = compute_drift(daily, AS_OF, config)
    bh_alone = set(report.tests.filter(pl.col("significant") & (pl.col("level") != "prompt")
                                       & ((pl.col("metric") != "consistency")
                                          | (pl.col("consistency_band") == DRIFTING)))
                   ["model_id"].to_list())
    out = {}
    for s in scenarios:
        mine = [m for m in report.models if m["model_id"].startswith(f"sim-{s}/")]
        assert len(mine) == models
        out[s] = {"drifting": sum(m["verdict"] == DRIFTING for m in mine) / models,
                  "watch": sum(m["verdict"] == "watch" for m in mine) / models,
                  "bh_alone": sum(m["model_id"] in bh_alone for m in mine) / models}
    return out


def flagged_share(scenarios: tuple[str, ...], models: int, seed: int,
                  config: DriftConfig | None = None) -> dict[str, float]:
    """One night with ``models`` models per scenario: the share of each flagged ``drifting``."""
    return {s: v["drifting"] for s, v in night(scenarios, models, seed, None, config).items()}


def test_no_drift_flags_at_most_five_percent() -> None:
    share = flagged_share(("none",), MODELS, seed=1)
    assert share["none"] <= 0.05


def test_injected_changes_are_detected() -> None:
    share = flagged_share(SCENARIOS, MODELS, seed=2)
    assert share["none"] <= 0.05
    for scenario in SCENARIOS[1:]:
        assert share[scenario] >= 0.95, (scenario, share)


def main(nights: int = 3, prompts: int = PROMPTS) -> None:
    totals = {s: dict.fromkeys(("drifting", "watch", "bh_alone"), 0.0) for s in SCENARIOS}
    started = time.perf_counter()
    for n in range(nights):
        for s, shares in night(SCENARIOS, MODELS, seed=1000 + n, prompts=prompts).items():
            for k, v in shares.items():
                totals[s][k] += v / nights
    print(f"{nights} simulated night(s), {MODELS} models per scenario per night, {prompts} "
          f"prompts × {SAMPLES} samples per day, {DAYS} days "
          f"({time.perf_counter() - started:.0f} s)\n")
    print("| scenario | truth | models | flagged `drifting` | `watch` | BH alone, no guard |")
    print("| --- | --- | --- | --- | --- | --- |")
    for s in SCENARIOS:
        t = totals[s]
        what = "false-positive rate" if s == "none" else "power"
        print(f"| {s} | {'no drift' if s == 'none' else 'drift'} | {MODELS * nights} | "
              f"**{t['drifting']:.1%}** ({what}) | {t['watch']:.1%} | {t['bh_alone']:.1%} |")


# --- issue 12: availability, refusals, meaning drift (i12-dims) ------------------------------
#
# The outage, refusals and outputs10 scenarios run through ``simulate`` above. Meaning drift
# needs text: ``simulate_meaning`` answers each prompt at "temperature 0.7" by paraphrasing one of
# two meanings from templates (openers, phrasings, closers and three wordings of the advice vary
# per sample, so nearly every output is new every day), and hands the drift stage the same
# distances the nightly computes (``tasks.summaries.embedding.window_distances``). The rates over
# many replicates use a cheap deterministic embedding (hashed bag of words) injected into that
# code path; ``test_meaning_change_with_the_real_model_end_to_end`` runs the real MiniLM model
# from raw rows in a store to the verdict.

DIMS_SCENARIOS = ("none", "outage", "refusals", "outputs10")
MEANING_PROMPTS = 30
# Per topic: two meanings, each three wordings of the same advice.
TOPICS = (
    (("restart the laptop", "reboot the computer", "turn the machine off and on again"),
     ("buy more memory", "upgrade the RAM", "add another memory module")),
    (("go to bed at the same time every night", "keep a regular sleep schedule",
      "sleep at fixed hours"),
     ("drink a glass of warm milk", "have some warm milk before bed",
      "try warm milk in the evening")),
    (("practise speaking with native speakers", "talk with people who speak it natively",
      "have conversations with natives"),
     ("memorise the grammar tables", "study the grammar rules by heart",
      "learn the conjugation tables")),
    (("cook at home instead of eating out", "prepare your own meals",
      "stop ordering takeaway"),
     ("invest in index funds", "put your savings into an index fund",
      "buy a broad stock market fund")),
    (("water it less often", "reduce the watering", "let the soil dry out between waterings"),
     ("move it to a sunnier spot", "give it more sunlight", "put it near a bright window")),
    (("drink more water", "stay hydrated", "have a large glass of water"),
     ("take a short nap in a dark room", "lie down somewhere dark and rest",
      "sleep for a while in a quiet room")),
)
TEMPLATES = ("{o} I would suggest that you {a}{c}", "{o} The best thing to do is to {a}{c}",
             "{o} Try to {a}{c}", "{o} My advice: {a}{c}")
OPENERS = ("Sure.", "Good question.", "Honestly,", "Well,", "")
CLOSERS = (".", " - that usually helps.", ", and you should see a difference soon.",
           ". Many people find this works.")
# Variants of one meaning of one prompt: action × template × opener × closer.
VARIANTS = 3 * len(TEMPLATES) * len(OPENERS) * len(CLOSERS)


def meaning_text(text_id: int) -> str:
    """The output a text id stands for: prompt, meaning and wording packed in one integer."""
    prompt, rest = divmod(text_id, 2 * VARIANTS)
    meaning, rest = divmod(rest, VARIANTS)
    action, rest = divmod(rest, len(TEMPLATES) * len(OPENERS) * len(CLOSERS))
    template, rest = divmod(rest, len(OPENERS) * len(CLOSERS))
    opener, closer = divmod(rest, len(CLOSERS))
    topic = TOPICS[prompt % len(TOPICS)]
    return TEMPLATES[template].format(o=OPENERS[opener], a=topic[meaning][action],
                                      c=CLOSERS[closer]).strip()


def hashed_bag_of_words(texts: list[str], dim: int = 256) -> np.ndarray:
    """A cheap deterministic embedding: unit vectors of hashed word counts."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().replace(",", " ").replace(".", " ").split():
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            out[i, h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1)


def meaning_ids(changed: bool, models: int, seed: int,
                prompts: int = MEANING_PROMPTS) -> np.ndarray:
    """Text ids of shape (models, prompts, DAYS, SAMPLES): every sample a fresh wording; when
    ``changed``, a fifth of the prompts switch to their other meaning on one recent day."""
    rng = np.random.default_rng(seed)
    shape = (models, prompts, DAYS, SAMPLES)
    meaning = np.zeros(shape, dtype=np.int64)
    if changed:
        start = rng.integers(DAYS - 7, DAYS - 3, models)[:, None, None, None]
        hit = (np.arange(prompts) < max(1, prompts // 5))[None, :, None, None]
        meaning = np.where(hit & (np.arange(DAYS)[None, None, :, None] >= start), 1, meaning)
    variant = rng.integers(0, VARIANTS, shape)
    prompt = np.arange(prompts)[None, :, None, None]
    return prompt * 2 * VARIANTS + meaning * VARIANTS + variant


def simulate_meaning(changed: bool, models: int, seed: int,
                     prompts: int = MEANING_PROMPTS) -> pl.DataFrame:
    """Daily summaries of ``models`` models answering at temperature 0.7 (output_hashes are
    text ids), pass rate 0.9 throughout."""
    rng = np.random.default_rng(seed + 1)
    ids = meaning_ids(changed, models, seed, prompts)
    n_groups = models * prompts * DAYS
    model_idx, prompt_idx, day_idx = (a.ravel() for a in np.indices((models, prompts, DAYS)))
    first = np.datetime64(AS_OF - timedelta(days=DAYS - 1), "D")
    hashes = pl.Series(ids.reshape(n_groups, SAMPLES)).cast(pl.List(pl.String)) \
        .list.unique().list.sort()
    tag = "meaning" if changed else "meaning-null"
    return pl.DataFrame({
        "date": first + day_idx,
        "evidence": np.full(n_groups, "project"),
        "model_id": pl.Series(model_idx).cast(pl.String).str.zfill(4),
        "suite": np.full(n_groups, "sim"),
        "prompt_id": pl.Series(prompt_idx).cast(pl.String),
        "rows": np.full(n_groups, SAMPLES, dtype=np.int64),
        "scored": np.full(n_groups, SAMPLES, dtype=np.int64),
        "passes": rng.binomial(SAMPLES, 0.9, n_groups).astype(np.int64),
        "output_hashes": hashes,
    }).with_columns(model_id=pl.lit(f"sim-{tag}/m") + pl.col("model_id"))


def cheap_vectors(daily: pl.DataFrame) -> Callable[[date], pl.DataFrame]:
    """A day → (output_hash, vector) source over the cheap embedding, each text embedded once."""
    ids = np.unique(daily["output_hashes"].explode().cast(pl.Int64).to_numpy())
    matrix = hashed_bag_of_words([meaning_text(int(i)) for i in ids])
    table = pl.DataFrame({"output_hash": pl.Series(ids).cast(pl.String),
                          "vector": pl.Series(matrix, dtype=pl.Array(pl.Float32, 256))})
    per_day = {day: table.join(part.select(output_hash=pl.col("output_hashes").explode())
                               .unique(), on="output_hash", how="semi")
               for (day,), part in daily.partition_by("date", as_dict=True).items()}
    return lambda day: per_day[day]


def meaning_night(models: int, seed: int) -> dict[str, dict[str, float]]:
    """One night with ``models`` changed and ``models`` unchanged models at temperature 0.7:
    per scenario the share called drifting, watch, and with a significant semantic test."""
    daily = pl.concat([simulate_meaning(True, models, seed * 100),
                       simulate_meaning(False, models, seed * 100 + 1)])
    window = Window.ending(AS_OF, DriftConfig())
    distances = window_distances(daily, window, cheap_vectors(daily))
    report = compute_drift(daily, AS_OF, semantic=SemanticInput(distances))
    semantic = set(report.tests.filter(pl.col("significant") & (pl.col("metric") == "semantic")
                                       & (pl.col("level") == "model"))["model_id"].to_list())
    out = {}
    for s, tag in (("meaning", "sim-meaning/"), ("meaning_null", "sim-meaning-null/")):
        mine = [m for m in report.models if m["model_id"].startswith(tag)]
        assert len(mine) == models
        out[s] = {"drifting": sum(m["verdict"] == DRIFTING for m in mine) / models,
                  "watch": sum(m["verdict"] == "watch" for m in mine) / models,
                  "semantic": sum(m["model_id"] in semantic for m in mine) / models}
    return out


def dims_night(models: int, seed: int) -> dict[str, dict[str, float]]:
    """One night of the outage, refusals and outputs10 scenarios with their null twin: per
    scenario the share drifting, watch, and with a degraded availability."""
    daily = pl.concat([simulate(s, models, seed * 100 + i) for i, s in enumerate(DIMS_SCENARIOS)])
    report = compute_drift(daily, AS_OF)
    out = {}
    for s in DIMS_SCENARIOS:
        mine = [m for m in report.models if m["model_id"].startswith(f"sim-{s}/")]
        assert len(mine) == models
        out[s] = {"drifting": sum(m["verdict"] == DRIFTING for m in mine) / models,
                  "watch": sum(m["verdict"] == "watch" for m in mine) / models,
                  "degraded": sum(m["availability"]["status"] == "degraded" for m in mine)
                  / models}
    return out


def test_outage_refusals_and_a_tenth_of_prompts_changing() -> None:
    share = dims_night(MODELS, seed=3)
    # A one-day outage of 60 % errors: availability flagged, the quality verdict as without it.
    assert share["outage"]["degraded"] >= 0.95, share
    assert share["outage"]["drifting"] <= 0.05 and share["outage"]["watch"] <= 0.05, share
    assert share["none"]["degraded"] <= 0.05, share
    # Refusals 2 % → 15 %: a quality change, flagged drifting; the calls themselves were fine.
    assert share["refusals"]["drifting"] >= 0.95, share
    assert share["refusals"]["degraded"] <= 0.05, share
    # 10 % of prompts change their answers on one day: at least watch.
    assert share["outputs10"]["drifting"] + share["outputs10"]["watch"] >= 0.95, share
    assert share["none"]["drifting"] + share["none"]["watch"] <= 0.05, share


def test_meaning_change_at_temperature_0_7_is_caught_and_its_twin_is_not() -> None:
    share = meaning_night(MODELS // 2, seed=4)
    assert share["meaning"]["drifting"] >= 0.95, share
    assert share["meaning"]["semantic"] >= 0.95, share
    assert share["meaning_null"]["drifting"] <= 0.05, share
    assert share["meaning_null"]["semantic"] <= 0.05, share


def test_meaning_change_with_the_real_model_end_to_end(tmp_path: Path) -> None:
    """Raw rows in a store → aggregation → the embedding cache (all-MiniLM-L6-v2) → drift →
    drift.json: the changed model drifts on its semantic test, its unchanged twin does not."""
    if not embeddings.available():
        pytest.skip(f"the real-model scenario {embeddings.INSTALL_HINT}")
    store = LocalStore(tmp_path / "data")
    prompts = 10
    ids = {"fake/meaning": meaning_ids(True, 1, seed=21, prompts=prompts)[0],
           "fake/meaning-null": meaning_ids(False, 1, seed=22, prompts=prompts)[0]}
    first = AS_OF - timedelta(days=DAYS - 1)
    for day in range(DAYS):
        ts = datetime.combine(first + timedelta(days=day), datetime_time(6), tzinfo=UTC)
        rows = [record(timestamp=ts, model_id=model, prompt_id=f"p{p:02d}", sample_idx=k,
                       output=meaning_text(int(model_ids[p, day, k])), temperature=0.7,
                       run_id=f"sim-{day}")
                for model, model_ids in ids.items() for p in range(prompts)
                for k in range(SAMPLES)]
        write_records(store, rows, user_id="scheduler", source="scheduled")
    aggregate_changed(store)
    window = Window.ending(AS_OF, DriftConfig())
    daily = read_daily(store, window.days())
    semantic = semantic_input(store, daily, window)
    assert semantic.skipped is None and semantic.encoder == embeddings.ENCODER_NAME
    report = compute_drift(daily, AS_OF, semantic=semantic)
    verdicts = {m["model_id"]: m["verdict"] for m in report.models}
    flagged = report.tests.filter(pl.col("significant") & (pl.col("metric") == "semantic")
                                  & (pl.col("level") == "model"))["model_id"].to_list()
    assert verdicts == {"fake/meaning": DRIFTING, "fake/meaning-null": "stable"}, report.models
    assert flagged == ["fake/meaning"]
    # Every output was new text: the consistency test alone could not tell the two apart.
    assert daily["distinct_outputs"].min() >= 2
    store.put("summaries/latest/drift.json", drift_json_bytes(report))
    doc = json.loads(store.get("summaries/latest/drift.json"))
    assert doc["semantic"]["status"] == "ran" and doc["semantic"]["embedded"] > 0


def dims_main(nights: int = 3) -> None:
    """The rates of the issue-12 scenarios for docs/drift.md, with 95 % Wilson intervals."""
    started = time.perf_counter()
    counts: dict[str, dict[str, float]] = {}
    n = {"dims": MODELS * nights, "meaning": MODELS // 2 * nights}
    for k in range(nights):
        for s, shares in [*dims_night(MODELS, 2000 + k).items(),
                          *meaning_night(MODELS // 2, 3000 + k).items()]:
            per = n["meaning"] if s.startswith("meaning") else n["dims"]
            for key, v in shares.items():
                counts.setdefault(s, {}).setdefault(key, 0.0)
                counts[s][key] += v * per / nights
    print(f"{nights} simulated night(s) ({time.perf_counter() - started:.0f} s)\n")
    print("| scenario | models | `drifting` | `watch` or `drifting` | availability `degraded` "
          "| semantic test significant |")
    print("| --- | --- | --- | --- | --- | --- |")
    for s, c in counts.items():
        per = n["meaning"] if s.startswith("meaning") else n["dims"]

        def cell(key: str, c: dict[str, float] = c, per: int = per) -> str:
            if key not in c:
                return "–"
            k = round(c[key])
            lo, hi = wilson_interval(np.array([float(k)]), np.array([float(per)]))
            return f"{k / per:.1%} [{lo[0]:.1%}, {hi[0]:.1%}]"

        both = {**c, "either": c["drifting"] + c["watch"]}
        print(f"| {s} | {per} | {cell('drifting')} | {cell('either', both)} "
              f"| {cell('degraded')} | {cell('semantic')} |")


# --- when it started: a gradual slide of pass rate (issue 12) -------------------------------------
# Each model's pass rate slides linearly from 0.90 to 0.75 over SLIDE_DAYS days, starting on a
# random day 14-21 of the 35 (so the slide ends by the last day and may straddle both windows);
# the nightly's change point (tasks.drift.changepoint over the history's daily series of the
# carrying metric) should name the slide's first day. ``python -c "from
# tests.tasks.drift.test_drift_simulation import slide_main; slide_main()"`` prints the figures
# of docs/drift.md.

SLIDE_DAYS = 14


def simulate_slide(models: int, seed: int) -> tuple[pl.DataFrame, dict[str, date]]:
    """Daily summaries of ``models`` sliding models, and each one's true first changed day."""
    daily = simulate("none", models, seed)
    rng = np.random.default_rng(seed + 7)
    starts = rng.integers(DAYS - 21, DAYS - SLIDE_DAYS + 1, models)
    progress = np.clip((np.arange(DAYS)[None, :] - starts[:, None] + 1) / SLIDE_DAYS, 0, 1)
    p_pass = 0.90 - 0.15 * progress  # (models, days)
    passed = rng.random((models, PROMPTS, DAYS, SAMPLES)) < p_pass[:, None, :, None]
    daily = daily.with_columns(
        model_id=pl.col("model_id").str.replace("sim-none/", "sim-slide/", literal=True),
        passes=pl.Series(passed.sum(axis=3).ravel().astype(np.int64)),
        score_values=_lists(passed.ravel().astype(np.float64), SAMPLES),
        # The history's other inputs (unused by the tests here).
        cost_usd=pl.lit(None, pl.Float64), distinct_outputs=pl.col("output_hashes").list.len(),
    )
    first = AS_OF - timedelta(days=DAYS - 1)
    truth = {f"sim-slide/m{i:04d}": first + timedelta(days=int(s)) for i, s in enumerate(starts)}
    return daily, truth


def slide_onsets(models: int, seed: int) -> dict[str, float]:
    """One night of sliding models: the share flagged, the share whose change point is within 3
    days of the true start (over all models: undated counts as a miss), the mean absolute error
    in days and the share whose day range holds the true start (over the dated ones)."""
    daily, truth = simulate_slide(models, seed)
    report = compute_drift(daily, AS_OF)
    flagged = [m["model_id"] for m in report.models if m["verdict"] in (DRIFTING, WATCH)]
    w = report.window
    history = history_frames(daily.with_columns(evidence=pl.lit(EVIDENCE_PROJECT)))
    points = change_points(report.tests, flagged, history, w.baseline_start, w.as_of)
    errors = np.array([(p.date - truth[m]).days for m, p in points.items()])
    covered = [p.earliest <= truth[m] <= p.latest for m, p in points.items()]
    return {"flagged": len(flagged) / models,
            "within_3_days": float((np.abs(errors) <= 3).sum()) / models,
            "mae_days": float(np.abs(errors).mean()) if errors.size else float("nan"),
            "bias_days": float(errors.mean()) if errors.size else float("nan"),
            "range_covers": float(np.mean(covered)) if covered else float("nan"),
            "range_days": float(np.mean([(p.latest - p.earliest).days + 1
                                         for p in points.values()])) if points else float("nan")}


def test_a_gradual_slide_is_dated_within_three_days_of_its_start() -> None:
    result = slide_onsets(MODELS, seed=5)
    assert result["flagged"] >= 0.95, result
    assert result["within_3_days"] >= 0.90, result
    assert result["mae_days"] <= 1.5, result


def slide_main(nights: int = 3) -> None:
    results = [slide_onsets(MODELS, seed=2000 + n) for n in range(nights)]
    print(f"{nights} night(s) × {MODELS} sliding models (0.90 → 0.75 over {SLIDE_DAYS} days, "
          f"{PROMPTS} prompts × {SAMPLES} samples per day)")
    for key in results[0]:
        print(f"{key}: {np.mean([r[key] for r in results]):.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["dims"]:  # the issue-12 scenarios: `... test_drift_simulation dims 3`
        dims_main(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
        sys.exit(0)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3,
         int(sys.argv[2]) if len(sys.argv) > 2 else PROMPTS)
