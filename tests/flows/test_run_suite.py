"""The run-suite flow under Prefect: shards tagged with a provider's concurrency limit (and
capped by it), progress and summary artifacts, re-running a run id resumes it, a missing key
fails before any call."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)

from flows.run_suite import RunSuiteParams, run_suite
from tasks.errors import PlumblineError, ProviderConfigError
from tasks.run.progress import PROGRESS
from tests.support.helpers import write_suite
from tests.support.stub_server import StubLLMServer

pytestmark = pytest.mark.prefect


def flow_run_artifacts(flow_run_id: UUID) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in arts}


def task_run_tags(flow_run_id: UUID) -> list[tuple[str, set[str]]]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run_id])))
    return [(r.name, set(r.tags)) for r in runs]


def test_flow_maps_tagged_shards_reports_progress_and_resumes(
    prefect_harness: None, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [{"id": f"c-{i}", "input": f"Repeat after me: token{i}", "ideal": [f"token{i}"],
              "assertion": {"type": "contains"}} for i in range(6)]
    suite_dir = write_suite(tmp_path / "flow-suite", cases)
    events: list[tuple[int, int]] = []
    unsubscribe = PROGRESS.subscribe(
        lambda run_id, done, total: events.append((done, total)) if run_id == "flow-1" else None)
    params = RunSuiteParams(suite=str(suite_dir), models=["fake/stable", "openai-compatible/m"],
                            samples=2, run_id="flow-1", shard_size=4)
    try:
        with StubLLMServer() as server:
            monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", f"{server.base_url}/v1")
            state = run_suite(**params.model_dump(), return_state=True)
            result = state.result()
            assert server.requests == 12
            again = run_suite(**params.model_dump())  # same run id: nothing left to call
            assert server.requests == 12
    finally:
        unsubscribe()

    assert result["rows"] == 24 and result["written"] == 24
    summary = {row["model_id"]: row for row in result["summary"]}
    assert summary["openai-compatible/m"]["pass_rate"] == 1.0
    assert summary["openai-compatible/m"]["cost_usd"] is None  # no price for a local model
    assert summary["fake/stable"]["cost_usd"] == 0.0
    assert again["written"] == 0 and again["resumed_cells"] == 24 and again["rows"] == 24
    assert again["summary"] == result["summary"]

    # Progress moved cell by cell, from 0 to all 24.
    dones = [d for d, t in events if t == 24]
    assert dones[0] == 0 and dones[-1] == 24 and dones == sorted(dones) and len(dones) == 25

    flow_run_id = state.state_details.flow_run_id
    tags = task_run_tags(flow_run_id)
    assert len(tags) == 4  # 2 models x 2 shards, never one task per call
    # No concurrency limit on any provider's tag: no shard waits for Prefect's slot service.
    assert all(not any(t.startswith("provider:") for t in ts) for _, ts in tags)
    artifacts = flow_run_artifacts(flow_run_id)
    assert artifacts["run-progress"].data == 100.0
    assert artifacts["run-summary"].type == "table"
    # The table a person reads in the UI: numbers rounded (milliseconds whole, rates to 3).
    table = artifacts["run-summary"].data
    table = json.loads(table) if isinstance(table, str) else table
    for row in table:
        assert all(isinstance(row[c], int) for c in ("latency_p50_ms", "latency_p95_ms")), row
        assert row["pass_rate"] == round(row["pass_rate"], 3)


def test_a_concurrency_limit_on_a_provider_tag_caps_its_shards(
    prefect_harness: None, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prefect concurrency-limit create provider:openai-compatible 1`: the shards of that
    provider carry the tag and run one at a time; the other provider's are not tagged."""
    cases = [{"id": f"c-{i}", "input": f"Repeat after me: token{i}", "ideal": [f"token{i}"],
              "assertion": {"type": "contains"}} for i in range(4)]
    suite_dir = write_suite(tmp_path / "capped-suite", cases)
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="provider:openai-compatible", concurrency_limit=1)
    try:
        with StubLLMServer(latency_s=0.3) as server:
            monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", f"{server.base_url}/v1")
            state = run_suite(suite=str(suite_dir), models=["openai-compatible/m", "fake/stable"],
                              run_id="capped-1", shard_size=2, return_state=True)
            assert state.is_completed(), state
    finally:
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag("provider:openai-compatible")
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    capped = sorted((r for r in runs if r.name.startswith("run-shard openai-compatible/")),
                    key=lambda r: r.start_time)
    others = [r for r in runs if r.name.startswith("run-shard fake/")]
    assert len(capped) == 2 and len(others) == 2
    assert all("provider:openai-compatible" in r.tags for r in capped)
    assert all(not any(t.startswith("provider:") for t in r.tags) for r in others)
    # One slot: the second shard started after the first one ended (each takes >= 0.3 s).
    assert capped[0].end_time <= capped[1].start_time


def test_missing_key_fails_the_flow_before_any_row(
    prefect_harness: None, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(ProviderConfigError, match="GROQ_API_KEY"):
        run_suite(models=["fake/stable", "groq/llama-3.3-70b-versatile"])
    assert not list(data_dir.glob("raw/**/*.parquet"))


def test_a_key_from_a_prefect_secret_block_reaches_the_wire(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    Secret(value="sk-or-from-block").save("openrouter-api-key", overwrite=True)
    try:
        _call_openrouter_with_the_block_key()
    finally:
        # The harness's database lives for the whole session: leave no key for other tests.
        Secret.delete("openrouter-api-key")


def test_a_secret_block_is_asked_for_once_per_flow_run(
    prefect_harness: None, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow's provider check and its shard tasks share one lookup of the key's Secret block
    (not one API round trip more before each shard's first call); a key changed in the block
    reaches the next run."""
    from prefect.blocks.system import Secret

    from tasks.providers import keys

    asked: list[str] = []
    ask = keys._ask_secret

    def counted(name: str) -> str | None:
        asked.append(name)
        return ask(name)

    monkeypatch.setattr(keys, "_ask_secret", counted)
    monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
    cases = [{"id": f"c-{i}", "input": f"Say {i}", "ideal": [f"{i}"],
              "assertion": {"type": "contains"}} for i in range(4)]
    suite_dir = write_suite(tmp_path / "keyed-suite", cases)
    try:
        with StubLLMServer(keep_log=True) as server:
            monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", f"{server.base_url}/v1")
            for run, key in (("keyed-1", "sk-one"), ("keyed-2", "sk-two")):
                Secret(value=key).save("openai-compatible-api-key", overwrite=True)
                state = run_suite(suite=str(suite_dir), models=["openai-compatible/m"],
                                  run_id=run, shard_size=2, return_state=True)
                assert state.is_completed(), state
    finally:
        Secret.delete("openai-compatible-api-key")
    assert asked == ["openai-compatible-api-key"] * 2  # one per flow run, 2 shards each
    auth = [headers.get("authorization") for _, headers, _ in server.log]
    assert auth == ["Bearer sk-one"] * 4 + ["Bearer sk-two"] * 4


def _call_openrouter_with_the_block_key() -> None:
    import asyncio

    import httpx2

    from tasks.providers.base import CompletionRequest
    from tasks.providers.registry import ProviderRegistry

    seen: list[str] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req.headers["authorization"])
        return httpx2.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    registry = ProviderRegistry(
        options={"openrouter": {"transport": httpx2.MockTransport(handler)}})
    registry.check(["openrouter/meta-llama/llama-3.3-70b-instruct"])

    async def go() -> None:
        provider, model = registry.for_model("openrouter/meta-llama/llama-3.3-70b-instruct")
        try:
            out = await provider.complete(model, CompletionRequest(
                messages=[{"role": "user", "content": "hi"}]))
            assert out.ok
        finally:
            await registry.aclose()

    asyncio.run(go())
    assert seen == ["Bearer sk-or-from-block"]


def flow_run_logs(flow_run_id: UUID) -> list[tuple[int, str]]:
    """(level, message) of every log line of a flow run and its task runs, oldest first."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [(log.level, log.message) for log in logs]


def stored_rows(data_dir: Path, run_id: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = [r for f in sorted(data_dir.glob("raw/**/*.parquet"))
            for r in pq.read_table(f).to_pylist()]
    return [r for r in rows if r["run_id"] == run_id]


def test_two_overlapping_runs_of_one_run_id_write_each_cell_once(
    prefect_harness: None, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16, item 4: a retried backfill ran twice at once and wrote 96 rows for 48 cells."""
    import threading

    from tasks.run.lease import read_lease
    from tasks.storage.local import LocalStore

    params = RunSuiteParams(suite="smoke", models=["openai-compatible/a", "openai-compatible/b"],
                            samples=3, run_id="backfill-1", concurrency=2)
    store = LocalStore(data_dir)
    first: dict[str, Any] = {}
    with StubLLMServer(latency_s=0.25) as server:
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", f"{server.base_url}/v1")
        thread = threading.Thread(target=lambda: first.update(state=run_suite(
            **params.model_dump(), return_state=True)))
        thread.start()
        deadline = time.monotonic() + 60
        while read_lease(store, "backfill-1") is None or server.requests == 0:
            assert time.monotonic() < deadline, "the first run never started calling"
            time.sleep(0.05)
        # The user's retry, while the first runs.
        second = run_suite(**params.model_dump(), return_state=True)
        requests_when_refused = server.requests
        thread.join(120)

    assert second.is_failed()
    holder = read_first_holder(first["state"])
    assert second.message.startswith("run 'backfill-1' is already running: held by flow run")
    assert holder in second.message
    assert requests_when_refused < 48  # the first was still calling: they overlapped
    assert first["state"].is_completed()
    assert first["state"].result()["written"] == 48
    assert server.requests == 48  # the second called nothing
    rows = stored_rows(data_dir, "backfill-1")
    assert len(rows) == 48
    assert len({(r["model_id"], r["prompt_id"], r["sample_idx"]) for r in rows}) == 48
    # The second run's log says why, once, with no traceback.
    logs = flow_run_logs(second.state_details.flow_run_id)
    errors = [m for level, m in logs if level >= 40]
    assert errors == [second.message]
    assert not any("Traceback" in m for _, m in logs)
    # The lease was released: re-running the id now resumes it, with nothing left to call.
    again = run_suite(**params.model_dump())
    assert again["written"] == 0 and again["rows"] == 48


def read_first_holder(state: Any) -> str:
    """The holder string the first run wrote into its lease: its flow run's name and id."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    return f"flow run {run.name!r} ({run.id})"


@pytest.mark.parametrize(("params", "message"), [
    (RunSuiteParams(suite="no-such-suite"), "no-such-suite"),
    (RunSuiteParams(models=["fake/stable", "fake/nope"]), "unknown fake model 'fake/nope'"),
    (RunSuiteParams(models=["nope/model"]), "unknown provider 'nope'"),
])
def test_a_bad_suite_or_model_fails_at_once_with_one_message_and_no_traceback(
    prefect_harness: None, data_dir: Path, params: RunSuiteParams, message: str
) -> None:
    """Issue 16, item 11: the UI form's bad value failed the run with two full tracebacks."""
    started = time.monotonic()
    state = run_suite(**params.model_dump(), return_state=True)
    assert time.monotonic() - started < 10
    assert state.is_failed() and message in state.message
    flow_run_id = state.state_details.flow_run_id
    logs = flow_run_logs(flow_run_id)
    assert [m for level, m in logs if level >= 40] == [state.message]
    assert not any("Traceback" in m for _, m in logs), logs
    assert task_run_tags(flow_run_id) == []  # refused before any task
    assert not list(data_dir.glob("raw/**/*.parquet"))
    # Called directly (the CLI, a parent flow), the error itself is raised, message intact.
    with pytest.raises(PlumblineError, match=re.escape(message)):
        run_suite(**params.model_dump())


def test_an_interrupted_run_stops_its_shards_quietly_keeping_every_answer(
    prefect_harness: None, data_dir: Path
) -> None:
    """Issue 16, item 11: cancelling a 40-shard run logged 40 "Crash detected!" lines, one per
    shard that had not started, while the started ones kept calling."""
    import os
    import signal

    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    models = ["fake/stable", "fake/drifting", "fake/flaky", "fake/drifting@2026-01-01",
              "fake/drifting@2025-01-01"]
    # 5 models x 8 shards of one case x 5 samples = 200 cells, paced at 10 a second: ~20 s.
    params = RunSuiteParams(suite="smoke", models=models, samples=5, shard_size=1,
                            run_id="interrupted-1", rpm_limit=600)
    interrupted: list[float] = []

    def interrupt_once_started(run_id: str, done: int, total: int) -> None:
        if run_id == "interrupted-1" and done >= 20 and not interrupted:
            interrupted.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C on `plumbline run`

    unsubscribe = PROGRESS.subscribe(interrupt_once_started)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_suite(**params.model_dump())
    finally:
        unsubscribe()
    stopped_after = time.monotonic() - interrupted[0]
    assert stopped_after < 8  # the shards stopped, they did not call on for 18 s

    with get_client(sync_client=True) as client:
        (flow_run,) = client.read_flow_runs(limit=1, sort="START_TIME_DESC")
        # Task states reach the API a moment after the tasks end (on a loaded machine, seconds):
        # wait for every shard's final state before judging them.
        deadline = time.monotonic() + 30
        while True:
            tasks = client.read_task_runs(task_run_filter=TaskRunFilter(
                flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run.id])))
            settled = all(t.state is not None and t.state.is_final() for t in tasks)
            if (len(tasks) == 40 and settled) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert len(tasks) == 40
    assert {t.state.name for t in tasks} <= {"Completed", "Stopped"}
    assert "Stopped" in {t.state.name for t in tasks}
    logs = flow_run_logs(flow_run.id)
    # One line says what happened; Prefect adds its own one for the flow run's interrupt.
    (warning,) = [m for level, m in logs if level == 30]
    said = re.fullmatch(r"run interrupted-1 interrupted: its shards stopped; the (\d+) cell\(s\) "
                        r"answered are kept, run the same run id again to finish it", warning)
    assert said is not None, warning
    assert [m for level, m in logs if level >= 40] == [
        "Crash detected! Execution was aborted by an interrupt signal."]
    # Nothing answered is lost, nothing is doubled: a resume calls exactly the rest.
    answered = stored_rows(data_dir, "interrupted-1")
    assert 20 <= len(answered) < 200 and len(answered) == int(said[1])
    resumed = run_suite(**params.model_copy(update={"rpm_limit": None}).model_dump())
    assert resumed["resumed_cells"] + resumed["written"] >= 200
    assert len({(r["model_id"], r["prompt_id"], r["sample_idx"])
                for r in stored_rows(data_dir, "interrupted-1")}) == 200

