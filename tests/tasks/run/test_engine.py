"""The run engine against a local server having a bad day: every cell ends as exactly one row."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tasks.catalog import load_suite
from tasks.errors import ConfigError
from tasks.retry import RetryPolicy
from tasks.run.plan import plan_shards, resolve_config
from tasks.run.shard import run_shard
from tasks.run.state import final_rows, open_run, read_run_rows, run_days
from tasks.run.summary import summarize
from tasks.storage.local import LocalStore
from tasks.suites.model import Suite
from tests.support.helpers import write_suite
from tests.support.stub_server import Reply, StubLLMServer

MODEL = "openai-compatible/stub-model"


def make_suite(tmp_path: Path, n: int = 20) -> Suite:
    cases = [{"id": f"c-{i:03d}", "input": f"Repeat after me: token{i}",
              "ideal": [f"token{i}"], "assertion": {"type": "contains"}} for i in range(n)]
    return load_suite(write_suite(tmp_path / "suite-under-test", cases))


def options(server: StubLLMServer, **extra: Any) -> dict[str, dict[str, Any]]:
    return {"openai-compatible": {
        "base_url": f"{server.base_url}/v1", "api_key": "k", "timeout": 1.0,
        # Enough attempts that no healthy cell can run out of them, whatever the interleaving.
        "retry": RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05), **extra}}


def prompt_of(body: Any) -> str:
    return body["messages"][-1]["content"] if body else ""


def test_a_bad_day_loses_no_cell(tmp_path: Path, store: LocalStore) -> None:
    suite = make_suite(tmp_path)

    def bad_day(path: str, body: Any, n: int) -> Reply | None:
        text = prompt_of(body)
        if text.endswith("token7"):
            return Reply(500, b'{"error": {"message": "boom", "type": "server_error"}}')
        if text.endswith("token11"):
            return Reply(200, b'{"id": "x", "choices": [{"mess')  # cut off mid-body
        if n <= 15:  # a 429 storm at the start
            return Reply(429, b'{"error": {"message": "slow down", "type": "rate_limit"}}',
                         {"retry-after-ms": "40"})
        if n in (20, 21):
            return Reply(hang=True)  # no answer: the client times out and retries
        if n % 9 == 0:
            return Reply(503, b'{"error": {"message": "busy", "type": "server_error"}}')
        return None

    config = resolve_config(suite, run_id="bad-day", samples=2, concurrency=8)
    with StubLLMServer(fault=bad_day) as server:
        open_run(store, suite, config)
        records = run_shard(suite, MODEL, suite.cases, config, store,
                            provider_options=options(server), flush_rows=7)

    assert len(records) == 40
    cells = {(r["prompt_id"], r["sample_idx"]) for r in records}
    assert len(cells) == 40
    by_case = {r["prompt_id"]: r for r in records}
    assert by_case["c-007"]["error"].startswith("HTTP 500")
    assert "gave up after 8 attempts" in by_case["c-007"]["error"]
    assert by_case["c-011"]["error"].startswith("malformed response")
    ok = [r for r in records if r["error"] is None]
    assert len(ok) == 36
    assert all(r["passed"] and r["output"] ==
               f"You said: Repeat after me: token{int(r['prompt_id'][2:])}" for r in ok)
    retried = [json.loads(r["metadata_json"]).get("attempts", 1) for r in ok]
    assert max(retried) > 1  # the storm was survived by retrying, not by luck

    # Everything is in storage too, written in several batches while the shard ran.
    stored = read_run_rows(store, "bad-day", config.user_id, run_days(store, "bad-day"))
    assert stored.num_rows == 40
    assert len([o for o in store.list("raw/") if o.key.endswith(".parquet")]) >= 5

    (summary,) = summarize(records)
    assert summary["rows"] == 40 and summary["errors"] == 4
    assert summary["pass_rate"] == pytest.approx(1.0)  # errors are not counted as failures


def test_final_rows_prefers_a_success_over_earlier_errors() -> None:
    from datetime import UTC, datetime

    from tests.support.helpers import record

    t0, t1 = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    err = record(prompt_id="a", output=None, error="HTTP 500", passed=None, timestamp=t0)
    ok = record(prompt_id="a", timestamp=t1)
    err2 = record(prompt_id="b", output=None, error="HTTP 500", passed=None, timestamp=t0)
    err3 = record(prompt_id="b", output=None, error="timeout", passed=None, timestamp=t1)
    rows = final_rows([err, ok, err2, err3])
    assert {(r["prompt_id"], r["error"]) for r in rows} == {("a", None), ("b", "timeout")}


def test_resuming_with_other_parameters_is_refused(tmp_path: Path, store: LocalStore) -> None:
    suite = make_suite(tmp_path, 3)
    open_run(store, suite, resolve_config(suite, run_id="r1", temperature=0.0))
    with pytest.raises(ConfigError, match=r"r1.*temperature=0\.0 \(now 0\.7\)"):
        open_run(store, suite, resolve_config(suite, run_id="r1", temperature=0.7))
    with pytest.raises(ConfigError, match="invalid run_id"):
        resolve_config(suite, run_id="../escape")


def test_plan_skips_completed_cells_and_whole_shards() -> None:
    from tasks.suites.model import Case

    cases = [Case(id=f"c{i}", input="x", assertion={"type": "contains"}, ideal="x")
             for i in range(4)]
    from tasks.run.plan import RunConfig

    config = RunConfig(run_id="r", samples=2, temperature=0, max_tokens=8, seed=None)
    done = {("m/a", "c0", 0), ("m/a", "c0", 1), ("m/a", "c1", 0), ("m/a", "c1", 1),
            ("m/a", "c2", 1)}
    plan = plan_shards(cases, ["m/a", "m/b"], config, 2, done)
    assert [(p.model_id, p.index, p.todo) for p in plan] == [("m/a", 1, 3), ("m/b", 0, 4),
                                                             ("m/b", 1, 4)]
    assert plan[0].skip == {("c2", 1)}


def test_a_stopped_shard_abandons_its_calls_and_keeps_every_answer(
    tmp_path: Path, store: LocalStore
) -> None:
    """The stop flag (a cancelled run, a lost lease): no new call starts, calls in flight are
    abandoned, and every answer received is written; a resume calls exactly the rest."""
    import threading

    from tasks.run.progress import PROGRESS

    suite = make_suite(tmp_path, 40)
    config = resolve_config(suite, run_id="stopped", samples=1, concurrency=4)
    PROGRESS.start("stopped", 40)

    def stop_after_ten(run_id: str, done: int, total: int) -> None:
        if run_id == "stopped" and done == 10:
            threading.Thread(target=PROGRESS.request_stop, args=("stopped",)).start()

    unsubscribe = PROGRESS.subscribe(stop_after_ten)
    try:
        with StubLLMServer(latency_s=0.3) as server:
            open_run(store, suite, config)
            started = time.monotonic()
            records = run_shard(suite, MODEL, suite.cases, config, store,
                                provider_options=options(server, timeout=30.0))
            elapsed = time.monotonic() - started
            calls_at_stop = server.requests
            time.sleep(0.5)
            assert server.requests == calls_at_stop  # nothing kept calling after the stop
    finally:
        unsubscribe()
        PROGRESS.forget("stopped")
    assert 10 <= len(records) < 20 and elapsed < 2.0  # not the 3 s all 40 calls would take
    stored = read_run_rows(store, "stopped", config.user_id, run_days(store, "stopped"))
    assert sorted(stored.column("prompt_id").to_pylist()) == sorted(r["prompt_id"]
                                                                    for r in records)
    # The resume calls exactly the cells without a row.
    state = open_run(store, suite, config)
    (p,) = plan_shards(suite.cases, [MODEL], config, 40, state.completed)
    assert p.todo == 40 - len(records)
