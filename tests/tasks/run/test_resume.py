"""Resumable runs: killed halfway and started again with the same run id, a run ends with exactly
one successful row per cell, and only the missing cells are called again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.catalog import load_suite
from tasks.records.compaction import compact_day
from tasks.retry import RetryPolicy
from tasks.run.plan import plan_shards, resolve_config
from tasks.run.shard import run_shard
from tasks.run.state import open_run, read_run_rows, run_days
from tasks.storage.local import LocalStore
from tasks.suites.model import Suite
from tests.support.helpers import write_suite
from tests.support.stub_server import Reply, StubLLMServer

ROOT = Path(__file__).resolve().parents[3]
MODEL = "openai-compatible/stub-model"
RUN_ID = "resume-me"

# The same steps as the run-suite flow, without Prefect: open (or resume) the run, then run
# every shard that still has work. Flushes every 4 rows so a kill leaves a partial run behind.
RUN_SCRIPT = """
import sys
from tasks.retry import RetryPolicy
from tasks.run.plan import plan_shards, resolve_config
from tasks.run.shard import run_shard
from tasks.run.state import open_run
from tasks.storage.local import LocalStore
from tasks.catalog import load_suite

store, suite = LocalStore(sys.argv[1]), load_suite(sys.argv[2])
config = resolve_config(suite, run_id=sys.argv[4], samples=2, concurrency=4)
state = open_run(store, suite, config)
opts = {"openai-compatible": {"base_url": sys.argv[3], "api_key": "k",
                              "retry": RetryPolicy(max_attempts=3, base_delay=0.01)}}
for p in plan_shards(suite.cases, [sys.argv[5]], config, 10, state.completed):
    run_shard(suite, p.model_id, p.cases, config, store, skip=p.skip, provider_options=opts,
              flush_rows=4)
print("DONE", len(state.completed), flush=True)
"""


def make_suite(tmp_path: Path, n: int) -> Suite:
    cases = [{"id": f"c-{i:03d}", "input": f"Repeat after me: token{i}",
              "ideal": [f"token{i}"], "assertion": {"type": "contains"}} for i in range(n)]
    return load_suite(write_suite(tmp_path / "resume-suite", cases))


def start_run(store_dir: Path, suite: Suite, base_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(
        [sys.executable, "-c", RUN_SCRIPT, str(store_dir), str(suite.path), base_url, RUN_ID,
         MODEL],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stored_rows(store: LocalStore, run_id: str) -> list[dict[str, Any]]:
    return read_run_rows(store, run_id, "scheduler", run_days(store, run_id)).to_pylist()


def successes_per_cell(rows: list[dict[str, Any]]) -> Counter[tuple[str, str, int]]:
    return Counter((r["model_id"], r["prompt_id"], r["sample_idx"]) for r in rows
                   if r["error"] is None)


def test_killed_run_restarted_with_the_same_id_completes_every_cell_once(
    tmp_path: Path, store: LocalStore
) -> None:
    suite = make_suite(tmp_path, 40)
    cells = 40 * 2
    store_dir = store.root
    # 80 cells, 4 in flight, 80 ms each: about 1.6 s of work, plenty of time to kill it midway.
    with StubLLMServer(latency_s=0.08) as server:
        proc = start_run(store_dir, suite, f"{server.base_url}/v1")
        try:
            deadline = time.monotonic() + 60
            # Kill it once some rows are durable (at least 3 batches) and well before the end.
            while time.monotonic() < deadline:
                if len(list(store_dir.glob("raw/**/*.parquet"))) >= 3:
                    break
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        before = stored_rows(store, RUN_ID)
        done_before = len(successes_per_cell(before))
        assert 0 < done_before < cells, "the kill should leave a partial run"
        requests_before = server.requests

        proc = start_run(store_dir, suite, f"{server.base_url}/v1")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == f"DONE {done_before}"
        # Only the cells without a successful row were called again.
        assert server.requests - requests_before == cells - done_before

    after = stored_rows(store, RUN_ID)
    per_cell = successes_per_cell(after)
    assert len(per_cell) == cells
    assert set(per_cell.values()) == {1}
    assert len(after) == cells  # the healthy server produced no error rows: no extra rows


def test_resume_after_compaction_redoes_only_failed_cells(tmp_path: Path,
                                                          store: LocalStore) -> None:
    suite = make_suite(tmp_path, 12)
    broken = {"token3", "token8"}

    def outage(path: str, body: Any, n: int) -> Reply | None:
        if body and body["messages"][-1]["content"].split()[-1] in broken:
            return Reply(503, b'{"error": {"message": "down", "type": "server_error"}}')
        return None

    def run_once(server: StubLLMServer) -> None:
        config = resolve_config(suite, run_id="compacted", samples=2, concurrency=4)
        state = open_run(store, suite, config)
        opts = {"openai-compatible": {"base_url": f"{server.base_url}/v1", "api_key": "k",
                                      "retry": RetryPolicy(max_attempts=2, base_delay=0.01)}}
        for p in plan_shards(suite.cases, [MODEL], config, 5, state.completed):
            run_shard(suite, p.model_id, p.cases, config, store, skip=p.skip,
                      provider_options=opts, flush_rows=3)

    with StubLLMServer(fault=outage) as server:
        run_once(server)
    first = stored_rows(store, "compacted")
    assert len(first) == 24 and sum(r["error"] is not None for r in first) == 4

    # The nightly merges the day's small files into one before the run is resumed.
    result = compact_day(store, datetime.now(UTC).date())
    assert result.files_in >= 2
    assert len([o for o in store.list("raw/") if o.key.endswith(".parquet")]) == 1

    broken.clear()
    with StubLLMServer() as server:
        run_once(server)
        assert server.requests == 4  # exactly the failed cells, nothing else

    after = stored_rows(store, "compacted")
    per_cell = successes_per_cell(after)
    assert len(per_cell) == 24 and set(per_cell.values()) == {1}
    # The earlier failures stay on record as what happened; they are not successes.
    assert sum(r["error"] is not None for r in after) == 4
