"""Benchmark of the nightly stages on ~10 M rows: aggregation vs DuckDB, memory, incremental, drift.

Generates 90 days × 20 models × 500 prompts × 11 samples (9.9 M rows) as compacted day files in
the record schema (vectorised numpy + pyarrow, ZSTD like the real writer) in a temp dir, then, in
the same run:

(a) the full aggregation with Plumbline's code (``tasks.summaries.aggregate.aggregate_changed``, no
    manifest yet), in a child process so its peak RSS is its own;
(b) the same group-by in DuckDB over the same files (same aggregates, value lists included,
    written as per-day Parquet like ours), also in a child process;
(c) an incremental night after one more day lands (target < 10 % of the full run);
(d) the drift stage over the last 35 days (10,000 (model, prompt) pairs) against a plain
    per-group loop of scipy calls doing the same tests (target ≥ 20× faster);
(e) the evidence stage (before/after and change points, ``beforeafter.night_evidence``) with
    every model treated as flagged (its worst case: 20 models × 5 prompts of raw rows over the
    35 window days), against the full aggregation of (a).
(f) the semantic (meaning drift) metric's cost per night with the local embedding model: the
    first night (every distinct output of the 35-day window embedded) against a following night
    (one new day: only outputs not already in the cache), in a child process; skipped without
    the ``embeddings`` extra.

Since issue 12 the aggregation also reads the head of every output (the refusal detector) and
keeps the most common error message; the DuckDB query computes the same.

Longer than 400 lines: one benchmark's phases, each run in its own child process, and the
plain-loop baseline they are measured against belong together.

Run: ``python -m tests.bench.bench_nightly`` (``--days 10`` for a quick look). ~5-10 minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.records.schema import RECORD_SCHEMA, SCHEMA_VERSION

FIRST_DAY = date(2026, 6, 1)
MODELS, PROMPTS, SAMPLES = 20, 500, 11


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def day_table(day: date, seed: int, models: int = MODELS, prompts: int = PROMPTS,
              samples: int = SAMPLES) -> pa.Table:
    """One day of records, generated column by column (no Python loop over rows)."""
    rng = np.random.default_rng(seed)
    n = models * prompts * samples
    model_idx = np.repeat(np.arange(models), prompts * samples)
    prompt_idx = np.tile(np.repeat(np.arange(prompts), samples), models)
    pair = model_idx * prompts + prompt_idx
    model_names = pa.array([f"bench/model-{m:02d}" for m in range(models)])
    prompt_names = pa.array([f"case-{p:04d}" for p in range(prompts)])
    # Output variants per (model, prompt): most answers repeat, some vary; hashes from a pool.
    variant = rng.choice(3, size=n, p=[0.8, 0.15, 0.05])
    hash_pool = pa.array([
        "sha256:" + hashlib.sha256(f"{i}".encode()).hexdigest()
        for i in range(models * prompts * 3)
    ])
    # One text in fifty a refusal, so the aggregation's refusal count has work to do.
    texts = pa.array([("I'm sorry, but I can't help with that." if k % 50 == 0 else
                       ("The answer is " + "lorem ipsum " * (k % 30)).strip())
                      for k in range(997)])
    text_idx = (pair * 3 + variant) % 997
    errors = rng.random(n) < 0.01
    # A failed call has no output (and so no length), like the run engine's rows.
    output = pc.if_else(pa.array(errors), pa.scalar(None, pa.string()),
                        texts.take(pa.array(text_idx)))
    passed = rng.random(n) < 0.9
    latency = np.exp(np.log(600) + 0.3 * np.sin(pair) + rng.normal(0, 0.25, n))
    in_tok = 20 + (pair % 200)
    out_tok = 5 + (text_idx % 30) * 2
    ts = datetime(day.year, day.month, day.day, 6, 0, tzinfo=UTC)
    base_id = pa.array(np.arange(n)).cast(pa.string())
    ids = pc.binary_join_element_wise(f"{day.isoformat()}-", base_id, "")

    def const(value: Any, typ: pa.DataType) -> pa.Array:
        return pa.array([value], typ).take(pa.array(np.zeros(n, dtype=np.int32)))

    def masked(values: np.ndarray, typ: pa.DataType) -> pa.Array:
        return pa.array(values, typ, mask=errors)

    columns = {
        "id": ids,
        "timestamp": const(ts, pa.timestamp("us", tz="UTC")),
        "user_id": const("scheduler", pa.string()),
        "model_id": model_names.take(pa.array(model_idx)),
        "prompt_id": prompt_names.take(pa.array(prompt_idx)),
        "output": output,
        "output_hash": hash_pool.take(pa.array(pair * 3 + variant)),
        "metadata_json": pa.nulls(n, pa.string()),
        "year": const(day.year, pa.int32()),
        "month": const(day.month, pa.int32()),
        "day": const(day.day, pa.int32()),
        "run_id": const(f"bench-{day.isoformat()}", pa.string()),
        "source": const("scheduled", pa.string()),
        "suite": const("bench", pa.string()),
        "suite_version": const("1.0.0", pa.string()),
        "suite_hash": const("sha256:" + "0" * 64, pa.string()),
        "category": pa.nulls(n, pa.string()),
        "sample_idx": pa.array(np.tile(np.arange(samples, dtype=np.int32), models * prompts)),
        "temperature": const(0.7, pa.float64()),
        "seed": const(42, pa.int64()),
        "passed": masked(passed, pa.bool_()),
        "score": masked(passed.astype(np.float64), pa.float64()),
        "assertion_type": const("contains", pa.string()),
        "score_reason": pa.nulls(n, pa.string()),
        "finish_reason": const("stop", pa.string()),
        "latency_ms": pa.array(np.round(latency, 1)),
        "input_tokens": pa.array(in_tok.astype(np.int64)),
        "output_tokens": masked(out_tok.astype(np.int64), pa.int64()),
        "cost_usd": pa.array(in_tok * 2.5e-6 + out_tok * 1e-5),
        "output_len": pc.cast(pc.utf8_length(output), pa.int32()),
        "error": pc.if_else(pa.array(errors), pa.scalar("HTTP 503", pa.string()),
                            pa.scalar(None, pa.string())),
        "schema_version": const(SCHEMA_VERSION, pa.int16()),
    }
    return pa.Table.from_pydict(columns, schema=RECORD_SCHEMA)


def write_day(root: Path, day: date, seed: int) -> int:
    from tasks.records.io import COMPRESSION, COMPRESSION_LEVEL, ROW_GROUP_SIZE
    from tasks.storage.layout import day_prefix

    table = day_table(day, seed)
    folder = root / day_prefix(day) / "user=scheduler"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"compacted_bench{seed:04d}.parquet",
                   compression=COMPRESSION, compression_level=COMPRESSION_LEVEL,
                   row_group_size=ROW_GROUP_SIZE)
    return table.num_rows


# --- phases run in child processes --------------------------------------------------------------

def phase_full(root: Path) -> dict[str, Any]:
    from tasks.storage.local import LocalStore
    from tasks.summaries.aggregate import aggregate_changed

    started = time.perf_counter()
    written = aggregate_changed(LocalStore(root))
    return {"seconds": time.perf_counter() - started, "days": len(written),
            "groups": sum(written.values()), "peak_mb": _peak_mb()}


def phase_incremental(root: Path, day: str) -> dict[str, Any]:
    from tasks.storage.local import LocalStore
    from tasks.summaries.aggregate import aggregate_changed

    write_day(root, date.fromisoformat(day), seed=9999)
    started = time.perf_counter()
    written = aggregate_changed(LocalStore(root))
    return {"seconds": time.perf_counter() - started, "days": len(written),
            "peak_mb": _peak_mb()}


DUCKDB_SQL = """
COPY (
  SELECT make_date(year, month, day) AS date, model_id, coalesce(suite, '') AS suite, prompt_id,
    count(*) AS rows,
    count(*) FILTER (WHERE error IS NOT NULL) AS errors,
    count(passed) AS scored,
    sum(passed::BIGINT) AS passes,
    avg(score) AS score_mean,
    quantile_cont(latency_ms, 0.5) FILTER (WHERE error IS NULL) AS latency_p50_ms,
    quantile_cont(latency_ms, 0.95) FILTER (WHERE error IS NULL) AS latency_p95_ms,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd,
    count(DISTINCT output_hash) FILTER (WHERE error IS NULL) AS distinct_outputs,
    avg(output_len) FILTER (WHERE error IS NULL) AS output_len_mean,
    list(latency_ms) FILTER (WHERE error IS NULL AND latency_ms IS NOT NULL) AS latency_values,
    list(score) FILTER (WHERE score IS NOT NULL) AS score_values,
    list(output_len) FILTER (WHERE error IS NULL AND output_len IS NOT NULL)
      AS output_len_values,
    list_sort(list_distinct(list(output_hash) FILTER (WHERE error IS NULL))) AS output_hashes,
    count(*) FILTER (WHERE error IS NULL) AS answered,
    count(*) FILTER (WHERE error IS NULL
                     AND regexp_matches(left(output, {head}), '{refusal}')) AS refusals,
    mode(left(error, 200)) AS top_error,
    CASE WHEN count(passed) > 0 THEN sum(passed::BIGINT) / count(passed) END AS pass_rate
  FROM read_parquet('{glob}', hive_partitioning = false)
  GROUP BY ALL
) TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date), OVERWRITE_OR_IGNORE)
"""


def phase_duckdb(root: Path) -> dict[str, Any]:
    import duckdb

    out = root.parent / "duckdb_out"
    shutil.rmtree(out, ignore_errors=True)
    con = duckdb.connect()
    started = time.perf_counter()
    from tasks.refusal import HEAD_CHARS, REFUSAL_PATTERN

    con.execute(DUCKDB_SQL.format(glob=f"{root}/raw/*/*/*/*/*.parquet", out=out,
                                  head=HEAD_CHARS, refusal=REFUSAL_PATTERN.replace("'", "''")))
    seconds = time.perf_counter() - started
    groups = con.execute(f"SELECT count(*) FROM read_parquet('{out}/*/*.parquet')").fetchone()
    return {"seconds": seconds, "groups": groups[0] if groups else 0, "peak_mb": _peak_mb()}


def phase_semantic(root: Path, day: str) -> dict[str, Any]:
    """The semantic metric over the window ending ``day``, then a following night (one more day
    of raw rows, aggregated, then the metric again): seconds and outputs embedded for each."""
    from tasks import embeddings
    from tasks.drift.config import DriftConfig, Window
    from tasks.storage.local import LocalStore
    from tasks.summaries.aggregate import aggregate_changed, read_daily
    from tasks.summaries.embedding import semantic_input

    if not embeddings.available():
        return {"skipped": embeddings.INSTALL_HINT}
    store = LocalStore(root)
    config = DriftConfig()
    started = time.perf_counter()
    embeddings.load()
    load_s = time.perf_counter() - started
    nights = []
    for as_of in (date.fromisoformat(day), date.fromisoformat(day) + timedelta(days=1)):
        if nights:
            write_day(root, as_of, seed=7777)
            aggregate_changed(store)
        window = Window.ending(as_of, config)
        daily = read_daily(store, window.days())
        started = time.perf_counter()
        result = semantic_input(store, daily, window)
        if result.skipped:
            raise RuntimeError(result.skipped)
        assert result.distances is not None
        nights.append({"seconds": time.perf_counter() - started, "embedded": result.embedded,
                       "reused": result.reused, "distances": result.distances.height})
    # The model's throughput, for the cost of a night whose outputs are all new (temperature
    # 0.7): 512 distinct sentences of the benchmark's kind.
    texts = [f"The answer is {i} " + "lorem ipsum " * (i % 30) for i in range(512)]
    started = time.perf_counter()
    embeddings.encode(texts)
    per_s = len(texts) / (time.perf_counter() - started)
    return {"load_s": load_s, "first": nights[0], "next": nights[1], "outputs_per_s": per_s,
            "peak_mb": _peak_mb()}


def _child(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "tests.bench.bench_nightly", *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"phase {args[0]} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- drift stage vs a per-group scipy loop ------------------------------------------------------

def loop_inputs(daily: Any, window: Any) -> list[dict[str, Any]]:
    """Per group (model level and prompt level): the pass counts and value arrays of both
    windows, extracted up front so the timed loop below is only the per-group scipy calls."""
    import polars as pl

    frame = daily.filter(pl.col("date").is_between(window.baseline_start, window.as_of)) \
        .with_columns(recent=pl.col("date") >= window.recent_start)
    groups: list[dict[str, Any]] = []
    for keys in (["model_id"], ["model_id", "suite", "prompt_id"]):
        agg = frame.group_by(keys).agg(
            **{f"{name}_{tag}": pl.col(col).filter(pl.col("recent") == flag).sum()
               for name, col in (("a", "passes"), ("n", "scored"), ("e", "errors"),
                                 ("rows", "rows"), ("r", "refusals"), ("ans", "answered"))
               if col in frame.columns
               for tag, flag in (("1", True), ("2", False))},
            **{f"{col}_{tag}": pl.col(col).filter(pl.col("recent") == flag)
               .list.explode(keep_nulls=False, empty_as_null=False)
               for col in ("latency_values", "output_len_values")
               for tag, flag in (("x", True), ("y", False))},
        )
        for row in agg.iter_rows(named=True):
            row["values"] = {col: (np.asarray(row.pop(f"{col}_x"), dtype=float),
                                   np.asarray(row.pop(f"{col}_y"), dtype=float))
                             for col in ("latency_values", "output_len_values")}
            # Each rate as (events, trials) of both windows: pass, error and refusal rates.
            row["rates"] = [(row[f"{k}_1"], row[f"{n}_1"], row[f"{k}_2"], row[f"{n}_2"])
                            for k, n in (("a", "n"), ("e", "rows"), ("r", "ans"))
                            if f"{k}_1" in row]
            groups.append(row)
    return groups


def drift_loop(groups: list[dict[str, Any]], config: Any) -> int:
    """The same tests as ``compute_drift``'s rate (pass, error, refusal) and distribution stages,
    written the plain way: one scipy call per group and metric, then BH over all p-values."""
    from scipy import stats

    p_values = []
    for g in groups:
        for a, n1, c, n2 in g["rates"]:
            table = [[a, n1 - a], [c, n2 - c]]
            if n1 >= config.min_test_n and n2 >= config.min_test_n and 0 < a + c < n1 + n2:
                expected = stats.contingency.expected_freq(table)
                if expected.min() >= config.chi2_min_expected:
                    p_values.append(stats.chi2_contingency(table).pvalue)
                else:
                    p_values.append(stats.fisher_exact(table).pvalue)
                stats.binomtest(a, n1).proportion_ci(method="wilson")
        for x, y in g["values"].values():
            if len(x) >= config.min_test_n and len(y) >= config.min_test_n:
                p_values.append(stats.mannwhitneyu(x, y, method="asymptotic").pvalue)
                np.median(x), np.median(y)
    stats.false_discovery_control(np.array(p_values))
    return len(p_values)


def bench_drift(root: Path | None, as_of: date) -> dict[str, Any]:
    """The drift stage vs the loop, on the benchmark's own summaries (``root``) or, without a
    root, on the simulator's 20 models × 500 prompts at 3 samples per prompt per day."""
    from tasks.drift.config import DriftConfig, Window
    from tasks.drift.report import compute_drift
    from tasks.storage.local import LocalStore
    from tasks.summaries.aggregate import read_daily

    config = DriftConfig()
    if root is None:
        from tests.tasks.drift import test_drift_simulation as sim

        as_of = sim.AS_OF
        daily = sim.simulate("latency", MODELS, seed=11, prompts=PROMPTS)
    window = Window.ending(as_of, config)
    if root is not None:
        daily = read_daily(LocalStore(root), window.days())
    pairs = daily.select("model_id", "prompt_id").unique().height
    # The machine is shared: ours is the median of three runs (a few seconds each); the loop
    # runs once, its ~40 s already average over the neighbours' load.
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        report = compute_drift(daily, as_of, config)
        runs.append(time.perf_counter() - started)
    ours = sorted(runs)[1]
    groups = loop_inputs(daily, window)
    started = time.perf_counter()
    loop_tests = drift_loop(groups, config)
    loop = time.perf_counter() - started
    return {"pairs": pairs, "values": int(daily["latency_values"].list.len().sum()),
            "tests": report.tests.height, "loop_tests": loop_tests,
            "seconds": ours, "loop_seconds": loop}


def bench_evidence(root: Path, as_of: date) -> dict[str, Any]:
    """The evidence stage on the benchmark's store, every model as if it were drifting."""
    import dataclasses

    from tasks.drift.config import DriftConfig, Window
    from tasks.drift.report import compute_drift
    from tasks.storage.local import LocalStore
    from tasks.summaries.aggregate import read_daily
    from tasks.summaries.beforeafter import DEFAULT_MAX_PROMPTS, night_evidence

    store = LocalStore(root)
    config = DriftConfig()
    report = compute_drift(read_daily(store, Window.ending(as_of, config).days()), as_of, config)
    forced = dataclasses.replace(report, models=[{**m, "verdict": "drifting"}
                                                 for m in report.models])
    started = time.perf_counter()
    night = night_evidence(store, forced, DEFAULT_MAX_PROMPTS)
    seconds = time.perf_counter() - started
    prompts = sum(len(json.loads(store.get(k))["prompts"]) for k in night.published.values())
    return {"seconds": seconds, "models": len(night.published), "prompts": prompts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--phase", choices=["full", "incremental", "duckdb", "semantic"])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--day")
    args = parser.parse_args()
    if args.phase == "full":
        print(json.dumps(phase_full(args.root)))
        return
    if args.phase == "incremental":
        print(json.dumps(phase_incremental(args.root, args.day)))
        return
    if args.phase == "duckdb":
        print(json.dumps(phase_duckdb(args.root)))
        return
    if args.phase == "semantic":
        print(json.dumps(phase_semantic(args.root, args.day)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="plumbline-bench-"))
    root = tmp / "store"
    try:
        started = time.perf_counter()
        rows = sum(write_day(root, FIRST_DAY + timedelta(days=i), seed=i)
                   for i in range(args.days))
        size_mb = sum(p.stat().st_size for p in root.rglob("*.parquet")) / 2**20
        print(f"generated {rows:,} rows over {args.days} days ({MODELS} models × {PROMPTS} "
              f"prompts × {SAMPLES} samples/day), {size_mb:.0f} MB of Parquet in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        full = _child("--phase", "full", "--root", str(root))
        print(f"(a) plumbline full aggregation: {full['seconds']:.1f} s, {full['groups']:,} "
              f"summary rows, peak RSS {full['peak_mb']:.0f} MB", flush=True)
        duck = _child("--phase", "duckdb", "--root", str(root))
        print(f"(b) duckdb same group-by:       {duck['seconds']:.1f} s, {duck['groups']:,} "
              f"summary rows, peak RSS {duck['peak_mb']:.0f} MB", flush=True)
        ratio = full["seconds"] / duck["seconds"]
        print(f"    ratio plumbline/duckdb = {ratio:.2f} (target ≤ 1)", flush=True)
        new_day = FIRST_DAY + timedelta(days=args.days)
        inc = _child("--phase", "incremental", "--root", str(root), "--day", new_day.isoformat())
        inc_ratio = inc["seconds"] / full["seconds"]
        print(f"(c) incremental night (+1 day): {inc['seconds']:.2f} s, {inc['days']} day(s) "
              f"re-aggregated, {inc_ratio:.1%} of the full run (target < 10 %)", flush=True)
        drift = bench_drift(root, new_day)
        speedup = drift["loop_seconds"] / drift["seconds"]
        print(f"(d) drift stage: {drift['pairs']:,} (model, prompt) pairs, {drift['values']:,} "
              f"latency values, {drift['tests']:,} tests in {drift['seconds']:.2f} s; "
              f"per-group scipy loop ({drift['loop_tests']:,} tests) "
              f"{drift['loop_seconds']:.1f} s; speedup {speedup:.1f}× (target ≥ 20×)", flush=True)
        drift3 = bench_drift(None, new_day)
        speedup3 = drift3["loop_seconds"] / drift3["seconds"]
        print(f"    same at 3 samples/prompt/day (the scheduled setting): {drift3['values']:,} "
              f"latency values, {drift3['tests']:,} tests in {drift3['seconds']:.2f} s; loop "
              f"{drift3['loop_seconds']:.1f} s; speedup {speedup3:.1f}×", flush=True)
        evidence = bench_evidence(root, new_day)
        ev_ratio = evidence["seconds"] / full["seconds"]
        print(f"(e) evidence stage (every model as if flagged): {evidence['models']} model(s), "
              f"{evidence['prompts']} prompt(s) of before/after in {evidence['seconds']:.2f} s, "
              f"{ev_ratio:.1%} of the full aggregation", flush=True)
        sem = _child("--phase", "semantic", "--root", str(root), "--day", new_day.isoformat())
        if "skipped" in sem:
            print(f"(f) semantic metric skipped: {sem['skipped']}", flush=True)
            semantic = "semantic=skipped"
        else:
            first, nxt = sem["first"], sem["next"]
            print(f"(f) semantic metric, first night: {first['seconds']:.1f} s, "
                  f"{first['embedded']:,} distinct outputs embedded, {first['reused']:,} vectors "
                  f"reused, {first['distances']:,} prompt-day distances (model load "
                  f"{sem['load_s']:.1f} s)\n"
                  f"    following night (+1 day): {nxt['seconds']:.1f} s, {nxt['embedded']:,} "
                  f"embedded, {nxt['reused']:,} reused; {nxt['seconds'] / first['seconds']:.1%} "
                  f"of the first; model throughput {sem['outputs_per_s']:.0f} outputs/s, "
                  f"peak RSS {sem['peak_mb']:.0f} MB", flush=True)
            semantic = (f"semantic_first_s={first['seconds']:.1f} "
                        f"semantic_next_s={nxt['seconds']:.1f} "
                        f"semantic_next_embedded={nxt['embedded']} "
                        f"embed_outputs_per_s={sem['outputs_per_s']:.0f}")
        print(f"RESULT rows={rows} full_s={full['seconds']:.2f} duckdb_s={duck['seconds']:.2f} "
              f"ratio_vs_duckdb={ratio:.2f} peak_mb={full['peak_mb']:.0f} "
              f"incremental_ratio={inc_ratio:.3f} drift_speedup={speedup:.1f} "
              f"drift_speedup_3_samples={speedup3:.1f} evidence_s={evidence['seconds']:.2f} "
              f"evidence_ratio={ev_ratio:.3f} {semantic}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
