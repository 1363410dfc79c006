"""OpenAI-compatible endpoints: each prefix reaches its own base URL with its own key, a real
stub server on 127.0.0.1 answers through a real socket, and a real timeout is survived."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest

from tasks.errors import ProviderConfigError
from tasks.providers.base import CompletionRequest
from tasks.providers.registry import ProviderRegistry, known_prefixes
from tasks.retry import RetryPolicy
from tests.support.stub_server import Reply, StubLLMServer

REQ = CompletionRequest(messages=[{"role": "user", "content": "Say hi"}], max_tokens=16)


def call(registry: ProviderRegistry, model_id: str) -> Any:
    async def go() -> Any:
        try:
            provider, model = registry.for_model(model_id)
            return await provider.complete(model, REQ)
        finally:
            await registry.aclose()

    return asyncio.run(go())


ENV = {
    "openrouter": ("OPENROUTER_API_KEY", "https://openrouter.ai/api/v1/chat/completions"),
    "groq": ("GROQ_API_KEY", "https://api.groq.com/openai/v1/chat/completions"),
    "gemini": ("GEMINI_API_KEY",
               "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"),
}


@pytest.mark.parametrize("prefix", sorted(ENV))
def test_hosted_compatible_prefixes_use_their_endpoint_and_key(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, url = ENV[prefix]
    monkeypatch.setenv(env, f"key-{prefix}")
    seen: list[httpx2.Request] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req)
        return httpx2.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    registry = ProviderRegistry(options={prefix: {"transport": httpx2.MockTransport(handler)}})
    out = call(registry, f"{prefix}/vendor/some-model")
    assert out.ok and out.text == "hi"
    (req,) = seen
    assert str(req.url) == url
    assert req.headers["authorization"] == f"Bearer key-{prefix}"
    body = json.loads(req.content)
    # Everything after the prefix is the provider's model name, slashes included.
    assert body["model"] == "vendor/some-model" and body["max_tokens"] == 16


@pytest.mark.parametrize("prefix", sorted(ENV))
def test_hosted_compatible_prefixes_need_a_key(prefix: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENROUTER_API_KEY", "GROQ_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                "PREFECT_API_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ProviderConfigError, match=ENV[prefix][0]):
        ProviderRegistry().check([f"{prefix}/m"])


def test_generic_endpoint_needs_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_COMPATIBLE_BASE_URL", raising=False)
    with pytest.raises(ProviderConfigError, match="OPENAI_COMPATIBLE_BASE_URL"):
        ProviderRegistry().check(["openai-compatible/m"])


def test_every_documented_prefix_is_registered() -> None:
    assert {"fake", "openai", "anthropic", "openrouter", "groq", "gemini", "vllm", "ollama",
            "openai-compatible"} <= set(known_prefixes())


def test_self_hosted_servers_over_a_real_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("VLLM_API_KEY", "OLLAMA_API_KEY", "OPENAI_COMPATIBLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with StubLLMServer(keep_log=True) as server:
        monkeypatch.setenv("VLLM_BASE_URL", f"{server.base_url}/v1")
        monkeypatch.delenv("OLLAMA_BASE_URL", raising=False)
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{server.port}")
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", f"{server.base_url}/v1")
        for model_id in ("vllm/qwen2.5-7b", "ollama/llama3.2", "openai-compatible/local"):
            out = call(ProviderRegistry(), model_id)
            assert out.ok and out.text == "You said: Say hi", model_id
            assert out.cost_usd is None  # self-hosted: no price unless configured
    assert [path for path, _, _ in server.log] == ["/v1/chat/completions"] * 3


def test_a_real_timeout_then_recovery_over_a_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def first_hangs(path: str, body: Any, n: int) -> Reply | None:
        return Reply(hang=True) if n == 1 else None

    with StubLLMServer(fault=first_hangs) as server:
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", f"{server.base_url}/v1")
        registry = ProviderRegistry(options={"openai-compatible": {
            "timeout": 0.3, "retry": RetryPolicy(max_attempts=3, base_delay=0.01)}})
        out = call(registry, "openai-compatible/m")
        assert out.ok and out.attempts == 2
        assert server.requests == 2


def test_a_refused_connection_is_reported_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = ProviderRegistry(options={"vllm": {
        "base_url": f"http://127.0.0.1:{port}/v1",
        "retry": RetryPolicy(max_attempts=2, base_delay=0.01)}})
    out = call(registry, "vllm/m")
    assert not out.ok and out.attempts == 2
    assert out.error.startswith("connection error: ConnectionRefusedError")


def test_a_dropped_connection_is_retried_over_a_socket() -> None:
    """The server closes the connection without answering (a crashed worker behind a proxy):
    a connection error, retried, and the next attempt succeeds."""
    def first_drops(path: str, body: Any, n: int) -> Reply | None:
        return Reply(drop=True) if n == 1 else None

    with StubLLMServer(fault=first_drops) as server:
        registry = ProviderRegistry(options={"vllm": {
            "base_url": f"{server.base_url}/v1",
            "retry": RetryPolicy(max_attempts=3, base_delay=0.01)}})
        out = call(registry, "vllm/m")
    assert out.ok and out.attempts == 2 and server.requests == 2


def test_a_bad_day_over_a_real_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compatible servers' client as it runs (the pooled transport, no test transport):
    a 429 with Retry-After is waited out, a 500 retried, a broken body and a redirect are each
    one error row, and the redirect's target is never called."""
    script: dict[int, Reply] = {
        1: Reply(429, b'{"error": {"message": "slow down"}}', {"retry-after": "0"}),
        2: Reply(500, b'{"error": {"message": "boom"}}'),
        4: Reply(200, b'{"id": "x", "choi'),
        5: Reply(302, b"", {"location": "http://127.0.0.1:9/v1/chat/completions"}),
    }
    with StubLLMServer(fault=lambda path, body, n: script.get(n), keep_log=True) as server:
        registry = ProviderRegistry(options={"openai-compatible": {
            "base_url": f"{server.base_url}/v1", "api_key": "sk-local",
            "retry": RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)}})

        async def go() -> list[Any]:
            try:
                provider, model = registry.for_model("openai-compatible/m")
                return [await provider.complete(model, REQ) for _ in range(3)]
            finally:
                await registry.aclose()

        recovered, broken, redirected = asyncio.run(go())
    assert recovered.ok and recovered.text == "You said: Say hi" and recovered.attempts == 3
    assert not broken.ok and broken.error.startswith("malformed response") and broken.attempts == 1
    assert not redirected.ok and redirected.error.startswith("HTTP 302")
    assert server.requests == 5
    headers = server.log[0][1]
    assert headers["authorization"] == "Bearer sk-local"
    assert headers["content-type"] == "application/json"


def test_without_a_key_no_authorization_header_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
    with StubLLMServer(keep_log=True) as server:
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", f"{server.base_url}/v1")
        assert call(ProviderRegistry(), "openai-compatible/m").ok
    assert "authorization" not in server.log[0][1]


def test_a_proxy_named_by_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.providers.openai_provider import proxied

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert not proxied("https://api.groq.com/openai/v1/chat/completions")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert proxied("https://api.groq.com/openai/v1/chat/completions")
    assert not proxied("http://127.0.0.1:8000/v1/chat/completions")  # plain http, and bypassed
    # Through a proxy the calls go by the pooled client, which resolves the proxy itself: the
    # stub stands in for the proxy of a host that does not resolve, so only a proxied call
    # can be answered.
    with StubLLMServer(keep_log=True) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        registry = ProviderRegistry(options={"vllm": {
            "base_url": "http://vllm.invalid/v1", "retry": RetryPolicy(max_attempts=1)}})
        out = call(registry, "vllm/m")
    assert out.ok and out.text == "You said: Say hi"
    assert proxy.log[0][0] == "http://vllm.invalid/v1/chat/completions"


@pytest.mark.parametrize("url", ["localhost:8000/v1", "ftp://models.internal/v1", "http://",
                                 "http://models.internal:port/v1", "not a url"])
def test_a_base_url_that_cannot_work_is_refused_before_any_call(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", url)
    with pytest.raises(ProviderConfigError, match=r"OPENAI_COMPATIBLE_BASE_URL = .* URL"):
        ProviderRegistry().check(["openai-compatible/m"])


def test_a_refused_base_url_is_shown_without_its_password(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_BASE_URL", "ftp://admin:hunter2@models.internal/v1")
    with pytest.raises(ProviderConfigError) as caught:
        ProviderRegistry().check(["vllm/m"])
    assert "hunter2" not in str(caught.value) and "***@models.internal" in str(caught.value)
