"""The run-suite flow under Prefect: shards tagged per provider, progress and summary artifacts,
re-running a run id resumes it, a missing key fails before any call."""

from __future__ import annotations

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
from tasks.errors import ProviderConfigError
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
            state = run_suite(params, return_state=True)
            result = state.result()
            assert server.requests == 12
            again = run_suite(params)  # same run id: nothing left to call
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
    assert sorted(next(iter(t for t in ts if t.startswith("provider:"))) for _, ts in tags) == \
        ["provider:fake", "provider:fake", "provider:openai-compatible",
         "provider:openai-compatible"]
    artifacts = flow_run_artifacts(flow_run_id)
    assert artifacts["run-progress"].data == 100.0
    assert artifacts["run-summary"].type == "table"


def test_missing_key_fails_the_flow_before_any_row(
    prefect_harness: None, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(ProviderConfigError, match="GROQ_API_KEY"):
        run_suite(RunSuiteParams(models=["fake/stable", "groq/llama-3.3-70b-versatile"]))
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
