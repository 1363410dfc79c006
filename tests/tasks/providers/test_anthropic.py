"""The anthropic provider drives the real ``anthropic`` SDK against a mock transport speaking the
Messages wire format."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tasks.catalog import load_suite
from tasks.errors import ProviderConfigError
from tasks.providers.anthropic_provider import AnthropicProvider, anthropic_factory
from tasks.providers.base import CompletionRequest
from tasks.providers.registry import ProviderRegistry
from tasks.retry import RetryPolicy
from tasks.run.plan import resolve_config
from tasks.run.shard import run_shard
from tasks.storage.local import LocalStore
from tests.support.helpers import write_suite
from tests.support.stub_server import Reply, StubLLMServer

Handler = Callable[[httpx2.Request], httpx2.Response]


def message_ok(text: str = "The answer is 6.", stop: str = "end_turn", inp: int = 20,
               out: int = 6) -> httpx2.Response:
    return httpx2.Response(200, json={
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": text}],
        "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": inp, "output_tokens": out},
    })


def error(status: int, kind: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, headers=headers or {}, json={
        "type": "error", "error": {"type": kind, "message": f"simulated {kind}"}})


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def provider(handler: Handler, *, sleep: Sleeps | None = None, attempts: int = 4,
             base_url: str | None = None) -> AnthropicProvider:
    return anthropic_factory(
        api_key="sk-ant-test",
        base_url=base_url or f"https://{uuid.uuid4().hex[:8]}.anthropic.test",
        transport=httpx2.MockTransport(handler),
        retry=RetryPolicy(max_attempts=attempts, base_delay=0.01, max_delay=0.05),
        sleep=sleep or Sleeps(),
    )


def complete(p: AnthropicProvider, model: str = "claude-sonnet-4-5", **kw: Any) -> Any:
    fields: dict[str, Any] = {
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Calculate: 2 + 2 * 2"}],
        "temperature": 0.0, "max_tokens": 128, "seed": 42, "prompt_id": "p1",
    }
    fields.update(kw)

    async def go() -> Any:
        try:
            return await p.complete(model, CompletionRequest(**fields))
        finally:
            await p.aclose()

    return asyncio.run(go())


def test_messages_wire_format_and_completion_fields() -> None:
    seen: list[httpx2.Request] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req)
        return message_ok(inp=2000, out=100)

    out = complete(provider(handler, base_url="https://api.anthropic.test"))
    assert out.ok and out.text == "The answer is 6."  # the thinking block is not the answer
    assert out.finish_reason == "stop"
    assert (out.input_tokens, out.output_tokens) == (2000, 100)
    # claude-sonnet-4-5: $3 / $15 per million tokens.
    assert out.cost_usd == pytest.approx((2000 * 3 + 100 * 15) / 1e6)
    (req,) = seen
    assert req.url == "https://api.anthropic.test/v1/messages"
    assert req.headers["authorization"] == "Bearer sk-ant-test"
    assert req.headers["anthropic-version"] == "2026-10-21"
    body = json.loads(req.content)
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "Calculate: 2 + 2 * 2"}]
    assert body["max_tokens"] == 128
    # API 2026-10-21 refuses sampling parameters (HTTP 400); Anthropic never had a seed.
    assert "temperature" not in body and "seed" not in body


def test_pinning_the_older_api_version_sends_temperature() -> None:
    seen: list[httpx2.Request] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req)
        return message_ok()

    p = anthropic_factory(api_key="k", base_url="https://v1.anthropic.test",
                          transport=httpx2.MockTransport(handler), api_version="2023-06-01")
    out = complete(p, temperature=0.7)
    assert out.ok
    assert seen[0].headers["anthropic-version"] == "2023-06-01"
    assert json.loads(seen[0].content)["temperature"] == 0.7


def test_max_tokens_stop_reason_maps_to_length() -> None:
    out = complete(provider(lambda r: message_ok(stop="max_tokens")))
    assert out.ok and out.finish_reason == "length"


def test_rate_limit_storm_and_overload_are_retried_honouring_retry_after() -> None:
    seq = iter([
        error(429, "rate_limit_error", {"retry-after": "0.3"}),
        error(429, "rate_limit_error", {"retry-after": "0.3"}),
        error(529, "overloaded_error"),
        error(500, "api_error"),
        message_ok(),
    ])
    stamps: list[float] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        stamps.append(time.monotonic())
        return next(seq)

    p = anthropic_factory(api_key="k", base_url=f"https://{uuid.uuid4().hex[:8]}.anthropic.test",
                          transport=httpx2.MockTransport(handler),
                          retry=RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.05))
    out = complete(p)
    assert out.ok and out.attempts == 5
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # Real time: each 429 was followed by at least its Retry-After, the 5xx by a short backoff.
    assert gaps[0] >= 0.3 and gaps[1] >= 0.3
    assert gaps[2] < 1.0 and gaps[3] < 1.0  # short backoffs (generous: the machine may be busy)


def test_persistent_overload_becomes_an_error_row() -> None:
    out = complete(provider(lambda r: error(529, "overloaded_error"), attempts=3))
    assert not out.ok and out.error.startswith("HTTP 529")
    assert "gave up after 3 attempts" in out.error


def test_timeout_and_malformed_body() -> None:
    def hang(req: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=req)

    out = complete(provider(hang, attempts=2))
    assert not out.ok and out.error.startswith("timeout") and out.attempts == 2

    calls = 0

    def broken(req: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return httpx2.Response(200, content=b'{"type": "message", "content": [{"ty',
                               headers={"content-type": "application/json"})

    out = complete(provider(broken))
    assert not out.ok and out.error.startswith("malformed response") and calls == 1


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(ProviderConfigError, match="ANTHROPIC_API_KEY"):
        ProviderRegistry().check(["anthropic/claude-sonnet-4-5"])


def test_a_429_storm_over_a_socket_pauses_the_endpoint_and_loses_no_cell(
    tmp_path: Path, store: LocalStore
) -> None:
    cases = [{"id": f"c-{i}", "input": f"Repeat after me: token{i}", "ideal": [f"token{i}"],
              "assertion": {"type": "contains"}} for i in range(16)]
    suite = load_suite(write_suite(tmp_path / "storm", cases))
    arrivals: list[tuple[float, int]] = []

    def storm(path: str, body: Any, n: int) -> Reply | None:
        arrivals.append((time.monotonic(), n))
        if n <= 12:
            return Reply(429, b'{"type": "error", "error": {"type": "rate_limit_error", '
                              b'"message": "slow down"}}', {"retry-after": "0.3"})
        return None

    with StubLLMServer(fault=storm) as server:
        config = resolve_config(suite, run_id="storm", concurrency=8)
        records = run_shard(suite, "anthropic/claude-haiku-4-5", suite.cases, config, store,
                            provider_options={"anthropic": {
                                "base_url": server.base_url, "api_key": "k",
                                "retry": RetryPolicy(max_attempts=6, base_delay=0.01)}})
        assert server.requests == 16 + 12
    assert len(records) == 16 and all(r["error"] is None and r["passed"] for r in records)
    # After the storm nobody called again before the Retry-After had passed.
    last_429 = max(t for t, n in arrivals if n <= 8)  # the first wave, answered at once
    first_retry = min(t for t, n in arrivals if n > 8)
    assert first_retry - last_429 >= 0.3 - 0.02
