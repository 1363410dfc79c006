"""``http/<name>`` targets: a team's own service in a custom JSON shape, run by the real engine
against a local server on 127.0.0.1 having a bad day; its header secrets never reach storage."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tasks.catalog import load_suite
from tasks.errors import ProviderConfigError
from tasks.providers.base import Completion, CompletionRequest
from tasks.providers.http_target import HTTPTargetProvider
from tasks.providers.registry import ProviderRegistry
from tasks.retry import RetryPolicy
from tasks.run.plan import RunConfig, plan_shards, provider_options, resolve_config
from tasks.run.shard import run_shard
from tasks.run.state import final_rows, open_run
from tasks.storage.local import LocalStore
from tasks.suites.model import Suite
from tests.support.helpers import write_suite
from tests.support.stub_server import Reply, StubLLMServer

MODEL = "http/rag"
SECRET = "sk-rag-5f1c0ffee-very-secret-token"
BLOCK_SECRET = "blk-7d2e9a0-team-secret"


def targets_toml(base_url: str, *, timeout_s: float = 5.0) -> str:
    return f"""
[targets.rag]
url = "{base_url}/api/v2/rag"
method = "POST"
timeout_s = {timeout_s}
headers = {{ Authorization = "Bearer {{env:RAG_TOKEN}}", X-Team = "{{secret:rag-team-key}}" }}
body = '''{{"question": "{{{{input}}}}", "history": "{{{{messages}}}}",
          "options": {{"temperature": "{{{{temperature}}}}", "seed": "{{{{seed}}}}",
                      "max_tokens": "{{{{max_tokens}}}}", "model": "{{{{model}}}}"}},
          "trace": "case {{{{prompt_id}}}} sample {{{{sample_idx}}}}"}}'''
response = {{ text = "$.data.answer.text", input_tokens = "$.meta.tokens.prompt", output_tokens = "$.meta.tokens.completion" }}
"""  # noqa: E501


def write_targets(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return path


def make_suite(tmp_path: Path, n: int = 16) -> Suite:
    cases = [{"id": f"c-{i:03d}", "input": f"Repeat after me: token{i}",
              "ideal": [f"token{i}"], "assertion": {"type": "contains"}} for i in range(n)]
    return load_suite(write_suite(tmp_path / "suite-under-test", cases))


def secrets(block: str) -> str | None:
    """Stands in for the Prefect Secret lookup (the lookup itself is keys.resolve_api_key's)."""
    return BLOCK_SECRET if block == "rag-team-key" else None


def options(targets: Path, **extra: Any) -> dict[str, dict[str, Any]]:
    return {"http": {"targets_file": targets, "load_secret": secrets,
                     "retry": RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05),
                     **extra}}


def run_all(store: LocalStore, suite: Suite, config: RunConfig,
            opts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """What the run-suite flow does without Prefect: open (or resume), run what is left."""
    state = open_run(store, suite, config)
    records = []
    for plan in plan_shards(suite.cases, [MODEL], config, 8, state.completed):
        records += run_shard(suite, plan.model_id, plan.cases, config, store, skip=plan.skip,
                             provider_options=opts, flush_rows=5)
    return records


def question(body: Any) -> str:
    return body.get("question", "") if isinstance(body, dict) else ""


def stored_rows(store_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for path in store_dir.rglob("*.parquet"):
        rows += pq.read_table(path).to_pylist()
    return rows


def test_a_bad_day_ends_every_cell_as_a_row_and_resume_calls_only_the_failed(
        tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TOKEN", SECRET)
    suite = make_suite(tmp_path)
    healthy = False

    def bad_day(path: str, body: Any, n: int) -> Reply | None:
        if healthy:
            return None
        q = question(body)
        if q.endswith("token3"):  # a 500 that echoes the request's credentials back
            return Reply(500, json.dumps({"error": f"upstream failed for Bearer {SECRET} "
                                          f"team {BLOCK_SECRET}"}).encode())
        if q.endswith("token5"):
            return Reply(200, b'{"data": {"status": "no answer"}}')  # the path is not there
        if q.endswith("token7"):
            return Reply(hang=True)  # never answers: the client times out
        if q.endswith("token9"):  # a 429 storm that never ends for this case
            return Reply(429, b'{"error": "slow down"}', {"retry-after-ms": "20"})
        if n <= 10:  # a 429 storm at the start that everyone else survives
            return Reply(429, b'{"error": "slow down"}', {"retry-after-ms": "30"})
        return None

    targets = write_targets(tmp_path, targets_toml("http://127.0.0.1:0"))
    config = resolve_config(suite, run_id="rag-bad-day", samples=2, concurrency=6)
    with StubLLMServer(fault=bad_day, keep_log=True) as server:
        targets.write_text(targets_toml(server.base_url, timeout_s=1.0))
        started = time.perf_counter()
        records = run_all(store, suite, config, options(targets))
        elapsed = time.perf_counter() - started
        first_calls = server.requests

        assert len(records) == 32
        assert len({(r["prompt_id"], r["sample_idx"]) for r in records}) == 32
        by_case = {r["prompt_id"]: r for r in records}
        assert by_case["c-003"]["error"].startswith("HTTP 500")
        assert "gave up after 4 attempts" in by_case["c-003"]["error"]
        assert "Bearer [redacted] team [redacted]" in by_case["c-003"]["error"]
        assert by_case["c-005"]["error"] == (
            "malformed response: no value at response path $.data.answer.text (response.text "
            f"of {targets}: [targets.rag]); the body was {{\"data\": {{\"status\": "
            "\"no answer\"}}")
        assert by_case["c-007"]["error"].startswith("timeout: no response within 1s")
        assert by_case["c-009"]["error"].startswith("HTTP 429")
        assert "gave up after 4 attempts" in by_case["c-009"]["error"]
        ok = [r for r in records if r["error"] is None]
        assert len(ok) == 24
        for r in ok:
            i = int(r["prompt_id"][2:])
            assert r["output"] == f"You said: Repeat after me: token{i}"
            assert r["passed"] is True
            assert r["output_tokens"] == 6 and r["input_tokens"] > 0
        attempts = [json.loads(r["metadata_json"]).get("attempts", 1) for r in ok]
        assert max(attempts) > 1  # the opening storm was survived by retrying
        assert elapsed < 30

        # What the service received: the secrets, resolved, in the headers; the case's input and
        # parameters as JSON values in the custom body.
        path, headers, body = next(e for e in server.log if question(e[2]).endswith("token1"))
        assert path == "/api/v2/rag"
        assert headers["authorization"] == f"Bearer {SECRET}"
        assert headers["x-team"] == BLOCK_SECRET
        assert body["history"] == [{"role": "user", "content": "Repeat after me: token1"}]
        assert body["options"] == {"temperature": 0.0, "seed": config.seed,
                                   "max_tokens": config.max_tokens, "model": "rag"}
        assert body["trace"] in ("case c-001 sample 0", "case c-001 sample 1")

        # Resume with the same run id once the service is well: only the failed cells again.
        healthy = True
        server.log.clear()
        again = run_all(store, suite, config, options(targets))
        called = [question(body) for _, _, body in server.log]
        assert server.requests - first_calls == 8 == len(called)
        assert {q.rsplit("token", 1)[1] for q in called} == {"3", "5", "7", "9"}
        assert {(r["prompt_id"], r["error"]) for r in again} == {
            (f"c-00{i}", None) for i in (3, 5, 7, 9)}

    stored = stored_rows(tmp_path / "data")
    assert len(stored) == 40  # 32 from the first pass (8 of them errors) + 8 from the resume
    final = final_rows(stored)
    assert len(final) == 32 and all(r["error"] is None for r in final)
    # No secret anywhere in what was stored: rows, manifests, markers.
    assert SECRET not in repr(stored) and BLOCK_SECRET not in repr(stored)
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and BLOCK_SECRET.encode() not in data


def test_a_value_cannot_change_the_bodys_structure(tmp_path: Path, store: LocalStore,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TOKEN", SECRET)
    nasty = 'x", "admin": true, "q": "{{input}}\\u0000'
    suite = load_suite(write_suite(tmp_path / "nasty", [
        {"id": "n-1", "input": nasty, "ideal": ["x"], "assertion": {"type": "contains"}}]))
    with StubLLMServer(keep_log=True) as server:
        targets = write_targets(tmp_path, targets_toml(server.base_url))
        config = resolve_config(suite, run_id="nasty", samples=1)
        [row] = run_all(store, suite, config, options(targets))
    [(_, _, body)] = server.log
    assert body["question"] == nasty  # the same string, not a new key and not re-expanded
    assert "admin" not in body
    assert row["output"] == f"You said: {nasty}"


def test_a_rejected_key_stops_the_calls_and_says_which_target(
        tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TOKEN", SECRET)
    suite = make_suite(tmp_path, n=8)  # one shard: one provider, which learns once
    with StubLLMServer(fault=lambda p, b, n: Reply(401, b'{"error": "bad token"}')) as server:
        targets = write_targets(tmp_path, targets_toml(server.base_url))
        config = resolve_config(suite, run_id="rag-401", samples=1, concurrency=1)
        records = run_all(store, suite, config, options(targets))
        assert server.requests == 1  # every further call would fail the same way
    assert len(records) == 8
    assert all(r["error"].startswith("HTTP 401") for r in records)
    assert f"check the headers of {targets}: [targets.rag]" in records[-1]["error"]


def test_cached_answers_are_reused_on_request(tmp_path: Path, store: LocalStore,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TOKEN", SECRET)
    suite = make_suite(tmp_path, n=5)
    with StubLLMServer() as server:
        targets = write_targets(tmp_path, targets_toml(server.base_url))
        for run_id in ("cache-1", "cache-2"):
            config = resolve_config(suite, run_id=run_id, samples=1, use_cache=True)
            rows = run_all(store, suite, config, options(targets))
        assert server.requests == 5
    assert all(json.loads(r["metadata_json"]).get("cached") for r in rows)
    assert all(r["error"] is None and r["passed"] for r in rows)


def test_settings_reach_the_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.settings import Settings

    targets = write_targets(tmp_path, targets_toml("https://rag.example.com"))
    monkeypatch.setenv("PLUMBLINE_TARGETS_FILE", str(targets))
    opts = provider_options([MODEL], targets_file=Settings().targets_file, timeout=9.0)
    assert opts["http"]["targets_file"] == targets
    monkeypatch.setenv("RAG_TOKEN", SECRET)
    registry = ProviderRegistry(options={"http": {**opts["http"], "load_secret": secrets}})
    registry.check([MODEL])
    with pytest.raises(ProviderConfigError, match=r"no target 'other' in the targets file .*"
                       r"targets.toml \(defined: rag\)"):
        registry.check(["http/other"])


def test_a_missing_secret_fails_before_any_call_without_a_value(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    targets = write_targets(tmp_path, targets_toml("https://rag.example.com"))
    monkeypatch.delenv("RAG_TOKEN", raising=False)
    registry = ProviderRegistry(options=options(targets))
    with pytest.raises(ProviderConfigError) as info:
        registry.check([MODEL])
    assert str(info.value) == (f"{targets}: [targets.rag].headers.Authorization: environment "
                               "variable RAG_TOKEN is not set")
    monkeypatch.setenv("RAG_TOKEN", SECRET)
    no_block = ProviderRegistry(options={"http": {"targets_file": targets,
                                                  "load_secret": lambda name: None}})
    with pytest.raises(ProviderConfigError, match=r"headers.X-Team: Prefect Secret block "
                       r"'rag-team-key' was not found"):
        no_block.check([MODEL])


def test_a_get_target_sends_its_parameters_in_the_query(tmp_path: Path) -> None:
    with StubLLMServer(keep_log=True) as server:
        path = write_targets(tmp_path, f"""
[targets.search]
url = "{server.base_url}/rag"
method = "GET"
query = {{ question = "{{{{input}}}}", seed = "{{{{seed}}}}", n = "{{{{sample_idx}}}}" }}
response = {{ text = "$.data.answer.text" }}
""")
        provider = HTTPTargetProvider(targets_file=path)

        async def call() -> Completion:
            try:
                return await provider.complete("search", CompletionRequest(
                    messages=[{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "a b&c"}], sample_idx=2))
            finally:
                await provider.aclose()

        done = asyncio.run(call())
    assert done.error is None and done.input_tokens is None
    [(sent, _, body)] = server.log
    assert body is None
    assert sent == "/rag?question=a+b%26c&n=2"  # an unset seed is left out


def test_a_redirect_is_an_error_row_and_is_not_followed(tmp_path: Path, store: LocalStore,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TOKEN", SECRET)
    suite = make_suite(tmp_path, n=1)
    with StubLLMServer(keep_log=True, fault=lambda p, b, n: Reply(
            302, b"", {"location": "http://127.0.0.1:9/steal"})) as server:
        targets = write_targets(tmp_path, targets_toml(server.base_url))
        config = resolve_config(suite, run_id="rag-302", samples=1)
        [row] = run_all(store, suite, config, options(targets))
        assert server.requests == 1  # the headers went to the configured URL only
    assert row["error"].startswith("HTTP 302")


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_a_prefect_secret_block_is_resolved_at_call_time(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.blocks.system import Secret

    monkeypatch.setenv("RAG_TOKEN", SECRET)
    Secret(value=BLOCK_SECRET).save("rag-team-key", overwrite=True)
    with StubLLMServer(keep_log=True) as server:
        targets = write_targets(tmp_path, targets_toml(server.base_url))
        registry = ProviderRegistry(options={"http": {"targets_file": targets}})
        registry.check([MODEL])

        async def call() -> Completion:
            try:
                provider, model = registry.for_model(MODEL)
                return await provider.complete(model, CompletionRequest(
                    messages=[{"role": "user", "content": "hello"}]))
            finally:
                await registry.aclose()

        done = asyncio.run(call())
    assert done.error is None and done.text == "You said: hello"
    [(_, headers, _)] = server.log
    assert headers["x-team"] == BLOCK_SECRET


@pytest.mark.prefect
def test_the_run_suite_flow_finds_targets_through_its_setting_and_resumes(
        prefect_harness: None, data_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.run_suite import RunSuiteParams, run_suite

    monkeypatch.setenv("RAG_TOKEN", SECRET)
    monkeypatch.setenv("PLUMBLINE_MAX_ATTEMPTS", "2")
    suite = make_suite(tmp_path, n=6)
    broken = {"token4"}

    def fault(path: str, body: Any, n: int) -> Reply | None:
        return Reply(503, b'{"error": "down"}') if question(body).split()[-1] in broken else None

    with StubLLMServer(fault=fault, keep_log=True) as server:
        # Not in the working directory: only the setting can point the flow at it.
        targets = tmp_path / "config" / "rag-targets.toml"
        targets.parent.mkdir()
        targets.write_text(targets_toml(server.base_url).replace(
            "{secret:rag-team-key}", "search"))
        monkeypatch.setenv("PLUMBLINE_TARGETS_FILE", str(targets))
        params = RunSuiteParams(suite=str(suite.path), models=[MODEL], run_id="flow-rag",
                                samples=1, shard_size=4)
        first = run_suite(**params.model_dump())
        assert first["rows"] == 6 and first["written"] == 6
        assert [r["errors"] for r in first["summary"]] == [1]
        server.log.clear()
        broken.clear()
        again = run_suite(**params.model_dump())
        assert [question(b) for _, _, b in server.log] == ["Repeat after me: token4"]
    assert again["written"] == 1 and again["resumed_cells"] == 5
    assert [r["errors"] for r in again["summary"]] == [0]


@pytest.mark.parametrize(("body", "expected"), [
    (b"<html>502 from the gateway</html>",
     "malformed response: the body is not JSON (Expecting value: line 1 column 1 (char 0)): "
     "<html>502 from the gateway</html>"),
    (b'{"data": {"answer": {"text": ["a", "b"]}}}',
     "malformed response: the value at response path $.data.answer.text is a list, not text"),
])
def test_a_2xx_body_that_is_not_the_shape_is_an_error_not_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes, expected: str) -> None:
    monkeypatch.setenv("RAG_TOKEN", SECRET)
    with StubLLMServer(fault=lambda p, b, n: Reply(200, body)) as server:
        provider = HTTPTargetProvider(**options(write_targets(
            tmp_path, targets_toml(server.base_url)))["http"])

        async def call() -> Completion:
            try:
                return await provider.complete("rag", CompletionRequest(
                    messages=[{"role": "user", "content": "hello"}]))
            finally:
                await provider.aclose()

        done = asyncio.run(call())
        assert server.requests == 1
    assert done.error == expected and done.text is None
