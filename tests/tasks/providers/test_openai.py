"""The openai provider drives the real ``openai`` SDK against a mock transport speaking the
Chat Completions wire format: what it sends, what it records, how it survives a bad day. Every
scenario runs twice: through the SDK (``openai/...``) and through the plain HTTP client the
OpenAI-compatible servers use; both must send and record the same."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from tasks.errors import ProviderConfigError
from tasks.providers.base import CompletionRequest
from tasks.providers.openai_provider import (
    ChatCompletionsProvider,
    openai_factory,
)
from tasks.providers.registry import ProviderRegistry
from tasks.retry import RetryPolicy

Handler = Callable[[httpx2.Request], httpx2.Response]


def chat_ok(text: str = "The answer is 6.", prompt: int = 12, completion: int = 5,
            finish: str = "stop") -> httpx2.Response:
    return httpx2.Response(200, json={
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    })


def error(status: int, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, headers=headers or {}, json={
        "error": {"message": f"simulated {status}", "type": "server_error"}})


class Sleeps:
    """Records backoff waits instead of sleeping them (injected, not patched)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


CLIENTS: dict[str, Callable[..., ChatCompletionsProvider]] = {
    "sdk": openai_factory,
    # The compatible servers' client, named "openai" so that the same prices apply.
    "plain": lambda **kw: ChatCompletionsProvider(
        name="openai", max_tokens_param=kw.pop("max_tokens_param", "max_completion_tokens"),
        **kw),
}
client = "sdk"


@pytest.fixture(autouse=True, params=sorted(CLIENTS))
def _each_client(request: pytest.FixtureRequest) -> Any:
    global client
    client = request.param
    yield
    client = "sdk"


def provider(handler: Handler, *, sleep: Sleeps | None = None, attempts: int = 4,
             base_url: str | None = None, **kw: Any) -> ChatCompletionsProvider:
    # A fresh host per provider: pacing state is shared per endpoint, tests must not share it.
    base_url = base_url or f"https://{uuid.uuid4().hex[:8]}.openai.test/v1"
    return CLIENTS[client](
        api_key="sk-test", base_url=base_url, transport=httpx2.MockTransport(handler),
        retry=RetryPolicy(max_attempts=attempts, base_delay=0.01, max_delay=0.05),
        sleep=sleep, **kw,
    )


def request(**kw: Any) -> CompletionRequest:
    fields: dict[str, Any] = {
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Calculate: 2 + 2 * 2"}],
        "temperature": 0.3, "max_tokens": 64, "seed": 7, "prompt_id": "p1",
        "reference": "6",
    }
    fields.update(kw)
    return CompletionRequest(**fields)


def complete(p: ChatCompletionsProvider, model: str = "gpt-4o", **kw: Any) -> Any:
    async def go() -> Any:
        try:
            return await p.complete(model, request(**kw))
        finally:
            await p.aclose()

    return asyncio.run(go())


def test_success_records_text_tokens_latency_and_cost_and_sends_the_wire_format() -> None:
    seen: list[httpx2.Request] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req)
        return chat_ok(prompt=1000, completion=500)

    out = complete(provider(handler, base_url="https://api.openai.test/v1"))
    assert out.ok and out.text == "The answer is 6."
    assert out.finish_reason == "stop"
    assert (out.input_tokens, out.output_tokens) == (1000, 500)
    # gpt-4o: $2.50 / $10.00 per million tokens (tasks/providers/pricing.toml).
    assert out.cost_usd == pytest.approx((1000 * 2.5 + 500 * 10.0) / 1e6)
    assert out.latency_ms is not None and out.latency_ms >= 0
    assert out.attempts == 1
    (req,) = seen
    assert req.url == "https://api.openai.test/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test"
    body = json.loads(req.content)
    assert body["model"] == "gpt-4o"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["temperature"] == 0.3 and body["seed"] == 7
    # OpenAI's own endpoint gets the current parameter name; "reference" never leaves.
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body
    assert "6" not in json.dumps(body["messages"][1])[-5:] and "reference" not in body


def test_unknown_model_price_is_null_never_zero() -> None:
    out = complete(provider(lambda r: chat_ok()), model="my-finetune-123")
    assert out.ok and out.input_tokens == 12
    assert out.cost_usd is None


def test_429_storm_honours_retry_after_then_succeeds() -> None:
    calls = 0

    def handler(req: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        if calls <= 3:
            return error(429, {"retry-after": "7"})
        return chat_ok()

    sleeps = Sleeps()
    out = complete(provider(handler, sleep=sleeps, attempts=6))
    assert out.ok and out.attempts == 4 and calls == 4
    # Never sooner than the provider asked, and not much later.
    assert len(sleeps.delays) == 3
    assert all(7.0 - 0.05 <= d <= 7.0 + 1.0 for d in sleeps.delays)


def test_retry_after_ms_is_preferred_and_a_huge_retry_after_gives_up() -> None:
    sleeps = Sleeps()
    seq = iter([error(429, {"retry-after-ms": "250", "retry-after": "1"}), chat_ok()])
    out = complete(provider(lambda r: next(seq), sleep=sleeps))
    assert out.ok and 0.24 <= sleeps.delays[0] < 0.3

    sleeps = Sleeps()
    out = complete(provider(lambda r: error(429, {"retry-after": "3600"}), sleep=sleeps))
    assert not out.ok and "HTTP 429" in out.error and "Retry-After" in out.error
    assert sleeps.delays == []


def test_5xx_is_retried_with_growing_backoff_and_a_persistent_one_becomes_an_error() -> None:
    seq = iter([error(500), error(502), chat_ok()])
    sleeps = Sleeps()
    out = complete(provider(lambda r: next(seq), sleep=sleeps))
    assert out.ok and out.attempts == 3 and len(sleeps.delays) == 2

    calls = 0

    def always_500(req: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return error(500)

    sleeps = Sleeps()
    out = complete(provider(always_500, sleep=sleeps, attempts=4))
    assert not out.ok and out.text is None
    assert out.error.startswith("HTTP 500") and "gave up after 4 attempts" in out.error
    assert calls == 4 and len(sleeps.delays) == 3
    # Exponential: each ceiling doubles (0.01, 0.02, 0.04), half of it fixed.
    assert sleeps.delays[0] >= 0.005 and sleeps.delays[2] >= 0.02


def test_timeouts_and_connection_errors_are_retried() -> None:
    calls = 0

    def flaky(req: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx2.ReadTimeout("read timed out", request=req)
        if calls == 2:
            raise httpx2.ConnectError("connection refused", request=req)
        return chat_ok()

    out = complete(provider(flaky, sleep=Sleeps()))
    assert out.ok and calls == 3

    def hang(req: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("read timed out", request=req)

    out = complete(provider(hang, sleep=Sleeps(), attempts=2, timeout=5.0))
    assert not out.ok and out.error.startswith("timeout: no response within 5s")


def test_malformed_body_is_an_error_row_not_a_retry_storm() -> None:
    calls = 0

    def broken(req: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return httpx2.Response(200, content=b'{"id": "x", "choi',
                               headers={"content-type": "application/json"})

    out = complete(provider(broken, sleep=Sleeps()))
    assert not out.ok and out.error.startswith("malformed response")
    assert calls == 1

    out = complete(provider(lambda r: httpx2.Response(200, json={"id": "x", "choices": []})))
    assert not out.ok and "no choices" in out.error


def test_bad_request_is_not_retried_and_bad_key_stops_further_calls() -> None:
    calls = 0

    def bad(req: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return error(400)

    out = complete(provider(bad, sleep=Sleeps()))
    assert not out.ok and out.error.startswith("HTTP 400") and calls == 1

    calls = 0

    def unauthorized(req: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return error(401)

    p = provider(unauthorized, sleep=Sleeps())

    async def three() -> list[Any]:
        try:
            return [await p.complete("gpt-4o", request()) for _ in range(3)]
        finally:
            await p.aclose()

    outs = asyncio.run(three())
    assert calls == 1
    assert all(not o.ok and "HTTP 401" in o.error and "API key" in o.error for o in outs[1:])


def test_missing_key_is_a_config_error_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(ProviderConfigError, match=r"OPENAI_API_KEY.*Secret block named "
                                                  r"'openai-api-key'"):
        ProviderRegistry().check(["openai/gpt-4o"])


def test_key_from_environment_reaches_the_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    seen: list[str] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req.headers["authorization"])
        return chat_ok()

    registry = ProviderRegistry(options={"openai": {"transport": httpx2.MockTransport(handler)}})
    registry.check(["openai/gpt-4o-mini"])

    async def go() -> Any:
        p, model = registry.for_model("openai/gpt-4o-mini")
        try:
            return await p.complete(model, request())
        finally:
            await registry.aclose()

    out = asyncio.run(go())
    assert out.ok and seen == ["Bearer sk-from-env"]
    assert out.cost_usd == pytest.approx((12 * 0.15 + 5 * 0.60) / 1e6)
