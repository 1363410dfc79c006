"""The opt-in response cache: identical calls are served from storage, repeats stay repeats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.catalog import load_suite
from tasks.providers.base import CompletionRequest
from tasks.retry import RetryPolicy
from tasks.run.cache import cache_key
from tasks.run.plan import resolve_config
from tasks.run.shard import run_shard
from tasks.storage.local import LocalStore
from tasks.suites.model import Suite
from tests.support.helpers import write_suite
from tests.support.stub_server import Reply, StubLLMServer

MODEL = "openai-compatible/stub-model"


def make_suite(tmp_path: Path) -> Suite:
    cases = [{"id": f"c-{i}", "input": f"Repeat after me: token{i}", "ideal": [f"token{i}"],
              "assertion": {"type": "contains"}} for i in range(4)]
    return load_suite(write_suite(tmp_path / "cache-suite", cases))


def run(suite: Suite, store: LocalStore, server: StubLLMServer, run_id: str,
        **overrides: Any) -> list[dict[str, Any]]:
    config = resolve_config(suite, run_id=run_id, samples=3, use_cache=True, **overrides)
    opts = {"openai-compatible": {"base_url": f"{server.base_url}/v1", "api_key": "k",
                                  "retry": RetryPolicy(max_attempts=1)}}
    return run_shard(suite, MODEL, suite.cases, config, store, provider_options=opts)


def test_second_run_is_served_from_the_cache_sample_by_sample(tmp_path: Path,
                                                              store: LocalStore) -> None:
    suite = make_suite(tmp_path)
    with StubLLMServer() as server:
        first = run(suite, store, server, "first")
        # Three samples of four cases are twelve separate calls, never collapsed into four.
        assert server.requests == 12
        second = run(suite, store, server, "second")
        assert server.requests == 12
        third = run(suite, store, server, "third", temperature=0.9)  # a different call
        assert server.requests == 24

    assert len(second) == 12
    assert all(json.loads(r["metadata_json"]).get("cached") for r in second)
    assert all(r["cost_usd"] == 0.0 for r in second)  # the repeat cost nothing
    key = lambda r: (r["prompt_id"], r["sample_idx"])  # noqa: E731
    assert {key(r): r["output"] for r in first} == {key(r): r["output"] for r in second}
    assert not any(json.loads(r["metadata_json"]).get("cached") for r in third)


def test_failures_are_never_cached(tmp_path: Path, store: LocalStore) -> None:
    suite = make_suite(tmp_path)

    def first_calls_fail(path: str, body: Any, n: int) -> Reply | None:
        return Reply(500, b'{"error": {"message": "x"}}') if n <= 12 else None

    with StubLLMServer(fault=first_calls_fail) as server:
        failed = run(suite, store, server, "a")
        assert all(r["error"] for r in failed)
        retried = run(suite, store, server, "b")
        assert server.requests == 24
    assert all(r["error"] is None for r in retried)


def test_key_covers_model_input_parameters_and_sample() -> None:
    base = CompletionRequest(messages=[{"role": "user", "content": "hi"}], temperature=0.0,
                             max_tokens=16, seed=1, sample_idx=0)
    variants = [
        ("openai/gpt-4o", base),
        ("openai/gpt-4o-mini", base),
        ("openai/gpt-4o", CompletionRequest(**{**base.__dict__, "sample_idx": 1})),
        ("openai/gpt-4o", CompletionRequest(**{**base.__dict__, "seed": 2})),
        ("openai/gpt-4o", CompletionRequest(**{**base.__dict__, "max_tokens": 17})),
        ("openai/gpt-4o", CompletionRequest(**{**base.__dict__, "messages": [
            {"role": "system", "content": "terse"}, {"role": "user", "content": "hi"}]})),
    ]
    keys = {cache_key(m, r) for m, r in variants}
    assert len(keys) == len(variants)
    # The prompt id is not part of the call: the same input under another id is the same call.
    assert cache_key("openai/gpt-4o", base) == cache_key(
        "openai/gpt-4o", CompletionRequest(**{**base.__dict__, "prompt_id": "other"}))
