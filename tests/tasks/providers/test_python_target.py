"""``python/<module>:<function>`` targets: a pipeline in a module of the working directory, run by
the real engine; its exceptions are rows, the run goes on, and resume calls only what failed."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.catalog import load_suite
from tasks.errors import ProviderConfigError
from tasks.providers.registry import ProviderRegistry
from tasks.run.plan import RunConfig, plan_shards, provider_options, resolve_config
from tasks.run.shard import run_shard
from tasks.run.state import final_rows, open_run, read_run_rows, run_days
from tasks.storage.local import LocalStore
from tasks.suites.model import Suite
from tests.support.helpers import write_suite

# The user's pipeline: sync and async, returning each shape a target may return. It records
# every call in CALLS and fails the cases listed in FAIL (a test empties it to "fix" the bug).
PIPELINE = '''
import asyncio
import time
from dataclasses import dataclass

CALLS = []
FAIL = {"token2", "token5"}


@dataclass
class Answer:
    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None


def answer(call):
    CALLS.append((call.prompt_id, call.sample_idx))
    word = call.input.rsplit(" ", 1)[-1]
    if word in FAIL:
        raise ValueError(f"retriever found nothing for {word}")
    if word == "token7":
        return {"text": f"It is {word}.", "input_tokens": 3, "output_tokens": 3}
    if word == "token8":
        return Answer(f"It is {word}.", 5)
    return f"It is {word}."


async def answer_async(call):
    CALLS.append((call.prompt_id, call.sample_idx))
    await asyncio.sleep(0.01)
    if call.input.endswith("token3"):
        raise KeyError("no such document")
    return {"text": f"{call.model} saw {call.input} at t={call.temperature}"}


def slow(call):
    time.sleep(0.2)
    return "done"


def hangs(call):
    time.sleep(3 if call.input.endswith("token1") else 0)
    return "done"


def wrong_type(call):
    return 42


NOT_A_FUNCTION = 3
'''


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh module name in a working directory that holds it; sys.path restored after."""
    name = f"pipeline_{uuid.uuid4().hex[:8]}"
    work = tmp_path / "work"
    work.mkdir()
    (work / f"{name}.py").write_text(PIPELINE)
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(work))])
    yield name
    sys.modules.pop(name, None)


def make_suite(tmp_path: Path, n: int = 10) -> Suite:
    cases = [{"id": f"c-{i:03d}", "input": f"Which token? token{i}",
              "ideal": [f"token{i}"], "assertion": {"type": "contains"}} for i in range(n)]
    return load_suite(write_suite(tmp_path / "suite-under-test", cases))


def run_all(store: LocalStore, suite: Suite, model: str, config: RunConfig,
            opts: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """What the run-suite flow does without Prefect: open (or resume), run what is left."""
    state = open_run(store, suite, config)
    ProviderRegistry(options=opts).check([model])
    records = []
    for plan in plan_shards(suite.cases, [model], config, 4, state.completed):
        records += run_shard(suite, plan.model_id, plan.cases, config, store, skip=plan.skip,
                             provider_options=opts, flush_rows=3)
    return records


def test_exceptions_are_rows_the_run_goes_on_and_resume_calls_only_the_failed(
        tmp_path: Path, store: LocalStore, pipeline: str) -> None:
    suite = make_suite(tmp_path)
    model = f"python/{pipeline}:answer"
    config = resolve_config(suite, run_id="py-run", samples=2, concurrency=4)
    records = run_all(store, suite, model, config)
    module = sys.modules[pipeline]

    assert len(records) == 20
    assert len({(r["prompt_id"], r["sample_idx"]) for r in records}) == 20
    failed = {r["prompt_id"] for r in records if r["error"] is not None}
    assert failed == {"c-002", "c-005"}
    assert {r["error"] for r in records if r["error"]} == {
        "ValueError: retriever found nothing for token2",
        "ValueError: retriever found nothing for token5"}
    ok = {(r["prompt_id"], r["sample_idx"]): r for r in records if r["error"] is None}
    assert all(r["passed"] and r["latency_ms"] is not None for r in ok.values())
    assert ok[("c-007", 0)]["output"] == "It is token7."
    assert (ok[("c-007", 0)]["input_tokens"], ok[("c-007", 0)]["output_tokens"]) == (3, 3)
    assert (ok[("c-008", 1)]["input_tokens"], ok[("c-008", 1)]["output_tokens"]) == (5, None)
    assert ok[("c-000", 0)]["input_tokens"] is None  # a plain string: tokens unknown
    assert sorted(module.CALLS) == sorted((f"c-{i:03d}", s) for i in range(10) for s in (0, 1))

    # The bug is fixed; the same run id calls the four failed cells, and only them.
    module.CALLS.clear()
    module.FAIL.clear()
    again = run_all(store, suite, model, config)
    assert sorted(module.CALLS) == [("c-002", 0), ("c-002", 1), ("c-005", 0), ("c-005", 1)]
    assert all(r["error"] is None for r in again)
    stored = read_run_rows(store, "py-run", config.user_id, run_days(store, "py-run"))
    assert stored.num_rows == 24  # the four error rows stay: they happened
    assert all(r["error"] is None for r in final_rows(stored.to_pylist()))


def test_an_async_function_gets_the_call_and_its_exception_is_a_row(
        tmp_path: Path, store: LocalStore, pipeline: str) -> None:
    suite = make_suite(tmp_path, n=5)
    model = f"python/{pipeline}:answer_async"
    config = resolve_config(suite, run_id="py-async", samples=1, temperature=0.5)
    # The options the run-suite flow builds for every prefix (timeout, retry policy, prices).
    opts = provider_options([model], timeout=5.0, max_attempts=3, rpm=6000)
    records = {r["prompt_id"]: r for r in run_all(store, suite, model, config, opts)}
    assert records["c-003"]["error"] == "KeyError: 'no such document'"
    assert records["c-004"]["output"] == (
        f"{pipeline}:answer_async saw Which token? token4 at t=0.5")


def test_sync_functions_run_in_threads_and_do_not_block_each_other(
        tmp_path: Path, store: LocalStore, pipeline: str) -> None:
    suite = make_suite(tmp_path, n=16)
    config = resolve_config(suite, run_id="py-slow", samples=1, concurrency=16)
    started = time.perf_counter()
    records = run_shard(suite, f"python/{pipeline}:slow", suite.cases, config, store)
    elapsed = time.perf_counter() - started
    assert len(records) == 16 and all(r["output"] == "done" for r in records)
    assert elapsed < 1.6  # 16 × 0.2 s one after another would take 3.2 s


def test_a_function_that_overruns_its_timeout_is_an_error_row(
        tmp_path: Path, store: LocalStore, pipeline: str) -> None:
    suite = make_suite(tmp_path, n=3)
    config = resolve_config(suite, run_id="py-hang", samples=1)
    started = time.perf_counter()
    records = {r["prompt_id"]: r for r in run_shard(
        suite, f"python/{pipeline}:hangs", suite.cases, config, store,
        provider_options={"python": {"timeout": 1.0}})}
    assert time.perf_counter() - started < 2.5  # not the 3 s the function sleeps
    assert records["c-001"]["error"] == "timeout: no answer within 1s"
    assert records["c-000"]["output"] == records["c-002"]["output"] == "done"


def test_a_result_of_the_wrong_type_is_an_error_row(
        tmp_path: Path, store: LocalStore, pipeline: str) -> None:
    suite = make_suite(tmp_path, n=2)
    config = resolve_config(suite, run_id="py-type", samples=1)
    records = run_shard(suite, f"python/{pipeline}:wrong_type", suite.cases, config, store)
    assert {r["error"] for r in records} == {
        "TypeError: the target returned a int; expected a string, a dict or an object with "
        "'text'"}


@pytest.mark.parametrize(("target", "expected"), [
    ("{m}:nope", "python target 'python/{m}:nope': module '{m}' has no 'nope'"),
    ("{m}:NOT_A_FUNCTION", "python target 'python/{m}:NOT_A_FUNCTION': {m}.NOT_A_FUNCTION is "
                           "a int, not a function"),
    ("no_such_module_xyz:f", "python target 'python/no_such_module_xyz:f': no module named "
                             "'no_such_module_xyz' (looked in PYTHONPATH and the working "
                             "directory"),
    ("{m}", "python target '{m}' must be 'module.path:function'"),
    ("os.path:join;rm", "python target 'os.path:join;rm' must be 'module.path:function'"),
    ("../evil:f", "python target '../evil:f' must be 'module.path:function'"),
])
def test_a_missing_module_or_function_fails_before_any_call(pipeline: str, target: str,
                                                            expected: str) -> None:
    with pytest.raises(ProviderConfigError) as info:
        ProviderRegistry().check([f"python/{target.format(m=pipeline)}"])
    assert str(info.value).startswith(expected.format(m=pipeline))


def test_a_module_that_fails_to_import_says_why(tmp_path: Path, pipeline: str) -> None:
    (Path.cwd() / "broken_pipeline_q.py").write_text("import not_installed_dep_q\n")
    with pytest.raises(ProviderConfigError, match="importing 'broken_pipeline_q' failed: No "
                       "module named 'not_installed_dep_q'"):
        ProviderRegistry().check(["python/broken_pipeline_q:f"])


def test_the_call_holds_the_input_text_and_a_copy_of_the_messages() -> None:
    from tasks.providers.base import CompletionRequest
    from tasks.providers.target_call import TargetCall

    parts = [{"type": "text", "text": "What shape is this?"},
             {"type": "image", "media_type": "image/png", "data": "iVBORw0KGgo="}]
    request = CompletionRequest(messages=[{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": parts}], sample_idx=3)
    call = TargetCall.from_request("pipeline:answer", request)
    assert call.input == "What shape is this?"
    assert call.messages == request.messages and call.sample_idx == 3
    call.messages[1]["content"][0]["text"] = "edited"
    assert parts[0]["text"] == "What shape is this?"  # the next call's messages are intact
