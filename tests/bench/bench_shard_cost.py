"""What one shard costs besides its calls: the numbers ``tasks/run/plan.py`` sizes shards with.

The same 2,000 offline ``fake/stable`` cells (no network, no latency: only the fixed costs show)
run as one shard and as 80 shards of 25 (the old default), two ways:

- ``run_shard`` alone, one after another: each shard builds an event loop, a provider registry,
  a record sink and writes at least one Parquet file (plus a day marker);
- the ``run-suite`` flow body (``flows.run_suite.execute``) under Prefect's engine with an
  ephemeral API: each shard is also a Prefect task run (a thread of the task runner, a task run
  created and its states reported through the API).

The extra cost of a shard is ``(t80 - t1) / 79``; the Prefect share is the flow's extra minus
``run_shard``'s. Then the user-visible question: the same flow body, 2,000 calls of one model
to the repo's stub server answering in 100 ms, 64 in flight, with the old default (shards of
25) and the new one (one task for the model); ideal 3.125 s. Best of three (the machine is
shared); every run printed.

    PYTHONPATH=$PWD .venv/bin/python tests/bench/bench_shard_cost.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from prefect import flow  # noqa: E402

from flows.run_suite import RunSuiteParams, execute  # noqa: E402
from tasks.catalog import load_suite  # noqa: E402
from tasks.run.plan import resolve_config, shard_cases  # noqa: E402
from tasks.run.shard import run_shard  # noqa: E402
from tasks.storage.local import LocalStore  # noqa: E402
from tasks.suites.model import Suite  # noqa: E402
from tests.bench.bench_throughput import start_server  # noqa: E402

CELLS = 2000
STUB_MODEL = "openai-compatible/bench-model"
IDEAL_S = CELLS * 0.100 / 64
SMALL = 25
REPEATS = 3
MODEL = "fake/stable"


def make_suite(folder: Path, n: int) -> Suite:
    folder.mkdir(parents=True)
    (folder / "suite.toml").write_text(
        'name = "shardcost"\nversion = "1.0.0"\ndescription = "fixed costs"\n')
    with (folder / "cases.jsonl").open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"s-{i:05d}", "input": f"Repeat after me: token{i}",
                                 "ideal": [f"token{i}"], "assertion": {"type": "contains"}})
                     + "\n")
    return load_suite(folder)


def bare(suite: Suite, store: LocalStore, size: int, run_id: str) -> float:
    config = resolve_config(suite, run_id=run_id, samples=1, concurrency=64)
    t0 = time.perf_counter()
    for shard in shard_cases(suite.cases, size):
        run_shard(suite, MODEL, shard, config, store)
    return time.perf_counter() - t0


@flow(name="bench-shard-cost")
def in_flow(suite_dir: str, size: int | None, run_id: str, data: str, model: str = MODEL) -> int:
    params = RunSuiteParams(suite=suite_dir, models=[model], samples=1, run_id=run_id,
                            shard_size=size, concurrency=64)
    return int(execute(params, LocalStore(Path(data)))["written"])


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        suite_dir = Path(tmp) / "suite"
        suite = make_suite(suite_dir, CELLS)
        n_small = len(shard_cases(suite.cases, SMALL))
        results: dict[str, list[float]] = {}
        for label, size in (("one", CELLS), ("small", SMALL)):
            results[f"bare-{label}"] = []
            for i in range(REPEATS):
                data = Path(tmp) / f"bare-{label}-{i}"
                wall = bare(suite, LocalStore(data), size, f"bare-{label}-{i}")
                results[f"bare-{label}"].append(wall)
                print(f"  run_shard x{len(shard_cases(suite.cases, size))}: {wall:.3f} s, "
                      f"{len(list(data.rglob('*.parquet')))} Parquet file(s)")
        in_flow(str(suite_dir), CELLS, "warmup", str(Path(tmp) / "warm"))  # server, imports
        for label, size in (("one", CELLS), ("small", SMALL)):
            results[f"flow-{label}"] = []
            for i in range(REPEATS):
                data = Path(tmp) / f"flow-{label}-{i}"
                t0 = time.perf_counter()
                written = in_flow(str(suite_dir), size, f"flow-{label}-{i}", str(data))
                wall = time.perf_counter() - t0
                assert written == CELLS, written
                results[f"flow-{label}"].append(wall)
                print(f"  run-suite flow, {len(shard_cases(suite.cases, size))} task run(s): "
                      f"{wall:.3f} s, {len(list(data.rglob('*.parquet')))} Parquet file(s)")
        best = {k: min(v) for k, v in results.items()}
        shard_ms = (best["bare-small"] - best["bare-one"]) / (n_small - 1) * 1000
        task_ms = (best["flow-small"] - best["flow-one"]) / (n_small - 1) * 1000
        prefect_ms = task_ms - shard_ms
        print(f"best of {REPEATS}: run_shard one {best['bare-one']:.3f} s, x{n_small} "
              f"{best['bare-small']:.3f} s -> {shard_ms:.1f} ms per extra shard (event loop, "
              f"registry, sink, Parquet file)")
        print(f"best of {REPEATS}: flow one task {best['flow-one']:.3f} s, x{n_small} "
              f"{best['flow-small']:.3f} s -> {task_ms:.1f} ms per extra task run, of which "
              f"{prefect_ms:.1f} ms Prefect (thread, task run, state reports); "
              f"ratio small/one {best['flow-small'] / best['flow-one']:.2f}")
        server, base_url = start_server()
        os.environ["OPENAI_COMPATIBLE_BASE_URL"] = base_url
        stub: dict[str, list[float]] = {"old": [], "new": []}
        try:
            for i in range(REPEATS):
                for label, size in (("old", SMALL), ("new", None)):
                    t0 = time.perf_counter()
                    written = in_flow(str(suite_dir), size, f"stub-{label}-{i}",
                                      str(Path(tmp) / f"stub-{label}-{i}"), STUB_MODEL)
                    wall = time.perf_counter() - t0
                    assert written == CELLS, written
                    stub[label].append(wall)
                    print(f"  stub 100 ms, {label} default ({size or 'one task per model'}): "
                          f"{wall:.3f} s ({wall / IDEAL_S:.2f}x ideal)")
        finally:
            server.terminate()
            server.wait(10)
        old, new = min(stub["old"]), min(stub["new"])
        print(f"best of {REPEATS}: 2,000 calls through the flow, shards of 25 {old:.3f} s, one "
              f"task {new:.3f} s: new/old {new / old:.2f}")
        print(f"RESULT cells={CELLS} shards_small={n_small} shard_ms={shard_ms:.1f} "
              f"task_run_ms={task_ms:.1f} prefect_ms={prefect_ms:.1f} "
              f"flow_small_over_one={best['flow-small'] / best['flow-one']:.2f} "
              f"stub_old_s={old:.3f} stub_new_s={new:.3f} new_over_old={new / old:.2f}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
