"""Chat Completions: ``openai/...`` through the official ``openai`` SDK (``AsyncOpenAI``), and
every OpenAI-compatible server (``tasks/providers/openai_compat.py``) over plain HTTP.

Both send the same request body and read the same response; they differ in the client. OpenAI's
own API gets its SDK: its headers, Azure and organisation settings, and errors as OpenAI defines
them. A compatible server (vLLM, Ollama, OpenRouter, Groq, Gemini, any other) gets one POST of
the same JSON over aiohttp's connection pool: importing the SDK costs about 0.5 s of CPU in every
process that runs a flow, and its request machinery about 0.3 ms per call, which bounds how
many calls one process keeps in flight (docs/benchmarks.md, "Run cost"). A case's image parts
are sent as Chat Completions ``image_url`` parts holding a base64 data URL.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from typing import Any

import httpx2

import tasks
from tasks.errors import ProviderConfigError
from tasks.providers.base import Completion, CompletionRequest
from tasks.providers.http_base import (
    HTTPProvider,
    JSONPoster,
    MalformedResponse,
    StatusError,
    classify_http_error,
    classify_sdk_error,
    pooled_client,
    snippet,
)
from tasks.providers.keys import resolve_api_key
from tasks.retry import Failure


def _import_sdk() -> Any:
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a declared dependency
        raise ProviderConfigError(
            "the openai provider needs the 'openai' package: pip install 'openai>=3.54'"
        ) from None
    return openai


class ChatCompletionsProvider(HTTPProvider):
    """Chat Completions over plain HTTP: ``POST {base_url}/chat/completions`` with a JSON body,
    the key (when there is one) as a bearer token. For the OpenAI-compatible servers.

    Each call's body is prepared once and POSTed over aiohttp's pool by a ``JSONPoster``, with
    no HTTP client library's request, response and stream objects around it (they cost a
    quarter of the call's CPU), and nothing here needs what they add: no cookies, the key is a
    fixed header, redirects are never followed. A test's ``transport`` (an httpx2 transport)
    takes its place; a given ``http_client`` is used through its ``send``, and so is the pooled
    client when the environment names a proxy for the URL (``HTTPS_PROXY`` and the like: the
    client resolves it).

    ``max_tokens_param``: most compatible servers only know ``max_tokens``.
    """

    def __init__(self, *, max_tokens_param: str = "max_tokens",
                 default_headers: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.base_url:
            raise ProviderConfigError(f"provider {self.name!r}: no base URL")
        self.max_tokens_param = max_tokens_param
        self._url = httpx2.URL(self.base_url.rstrip("/") + "/chat/completions")
        self._headers = {"content-type": "application/json",
                         "user-agent": f"plumbline/{tasks.__version__}",
                         **(default_headers or {})}
        if self._api_key:
            self._headers["authorization"] = f"Bearer {self._api_key}"
        self._timeouts = {"timeout": {"connect": min(10.0, self.timeout), "read": self.timeout,
                                      "write": self.timeout, "pool": self.timeout}}

    def _open(self) -> Any:
        if self._transport is None and self._given_client is None and not proxied(str(self._url)):
            poster = JSONPoster(str(self._url), self._headers,
                                connections=self.limits.max_in_flight, timeout=self.timeout,
                                tls=self._url.scheme == "https")
            self._http = poster
            return poster.post
        if self._given_client is not None:
            send = self._given_client.send
        elif self._transport is not None:  # a test's, owned (closed) by this provider as before
            self._http = self._transport
            send = self._transport.handle_async_request
        else:  # through a proxy: the pooled client resolves it
            client = pooled_client(timeout=httpx2.Timeout(self.timeout), limits=self._pool_limits())
            self._http = client
            send = client.send

        async def post(content: bytes) -> tuple[int, bytes, Any]:
            response = await send(httpx2.Request("POST", self._url, content=content,
                                                 headers=self._headers,
                                                 extensions=self._timeouts))
            return response.status_code, await response.aread(), response.headers

        return post

    async def _send(self, post: Any, model: str, request: CompletionRequest) -> Completion:
        content = json.dumps(chat_body(model, request, self.max_tokens_param),
                             ensure_ascii=False).encode()
        status, body, headers = await post(content)
        if not 200 <= status < 300:
            raise StatusError(status, error_detail(body), headers)
        return parse_chat_completion(body)

    def _classify(self, exc: Exception) -> Failure:
        return classify_http_error(exc, self.timeout)


class OpenAIProvider(HTTPProvider):
    """``openai/...``: Chat Completions through ``openai.AsyncOpenAI``, the SDK's retries off
    (ours count); the same request body and response reading as a compatible server's.

    ``max_tokens_param``: OpenAI's current models take ``max_completion_tokens`` (reasoning
    models refuse ``max_tokens``).
    """

    def __init__(self, *, max_tokens_param: str = "max_completion_tokens",
                 default_headers: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_tokens_param = max_tokens_param
        self.default_headers = default_headers or {}
        self._openai = _import_sdk()

    def _make_sdk(self, http: httpx2.AsyncClient) -> Any:
        return self._openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=httpx2.Timeout(self.timeout, connect=min(10.0, self.timeout)),
            http_client=http,
            default_headers=self.default_headers or None,
        )

    async def _send(self, sdk: Any, model: str, request: CompletionRequest) -> Completion:
        # The SDK's generic post(): its client, auth, base URL, timeouts and error types, without
        # building typed request and response models per call, which costs more CPU than the
        # rest of the call (docs/providers.md, "Throughput").
        response = await sdk.post("/chat/completions",
                                  body=chat_body(model, request, self.max_tokens_param),
                                  cast_to=httpx2.Response)
        return parse_chat_completion(response.content)

    def _classify(self, exc: Exception) -> Failure:
        return classify_sdk_error(exc, self._openai, self.timeout)


def proxied(url: str) -> bool:
    """Whether the environment sends requests to ``url`` through a proxy (``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY``, less ``NO_PROXY``)."""
    proxies = urllib.request.getproxies()
    parts = urllib.parse.urlsplit(url)
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def chat_body(model: str, request: CompletionRequest, max_tokens_param: str) -> dict[str, Any]:
    """A Chat Completions request body: model, messages (images as data URLs), sampling and
    the request's extras."""
    body: dict[str, Any] = {
        "model": model,
        "messages": openai_messages(request.messages),
        "temperature": request.temperature,
        max_tokens_param: request.max_tokens,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    body.update(request.extra)
    return body


def error_detail(content: bytes) -> str:
    """What an error row says of a non-2xx body: the API's ``error.message`` when the body is
    OpenAI's error shape, else the start of the body."""
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        message = err.get("message") if isinstance(err, dict) else err
        if isinstance(message, str) and message.strip():
            return snippet(message, 500)
    return snippet(content.decode("utf-8", "replace"), 500)


def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages in Chat Completions form: each image part becomes
    ``{"type": "image_url", "image_url": {"url": "data:<media type>;base64,<data>"}}``."""
    if not any(isinstance(m.get("content"), list) for m in messages):
        return messages  # text only, the common case: sent as it is, no copy
    return [{**m, "content": [_openai_part(p) for p in m["content"]]}
            if isinstance(m.get("content"), list) else m for m in messages]


def _openai_part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "image":
        url = f"data:{part['media_type']};base64,{part['data']}"
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "text", "text": part["text"]}


def parse_chat_completion(content: bytes) -> Completion:
    """Text, finish reason and tokens from a Chat Completions response body."""
    data = json.loads(content)
    if not isinstance(data, dict):
        raise MalformedResponse("the body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse("no choices in the response")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedResponse("the first choice has no message")
    text = message.get("content")
    if text is None:
        # A refusal is an answer to score, not a failure of the call.
        text = message.get("refusal") or ""
    if not isinstance(text, str):
        raise MalformedResponse(f"message content is {type(text).__name__}, not text")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    finish = choice.get("finish_reason")
    return Completion(
        text=text,
        finish_reason=finish if isinstance(finish, str) else None,
        input_tokens=_int_or_none(usage.get("prompt_tokens")),
        output_tokens=_int_or_none(usage.get("completion_tokens")),
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def openai_factory(
    *, api_key: str | None = None, base_url: str | None = None, secret_block: str | None = None,
    **options: Any,
) -> OpenAIProvider:
    """``openai/<model>``: key from ``OPENAI_API_KEY`` (or a Secret block), optional
    ``OPENAI_BASE_URL`` (an Azure or proxy endpoint that speaks the same API)."""
    key = resolve_api_key("openai", ["OPENAI_API_KEY"], explicit=api_key,
                          secret_block=secret_block)
    assert key is not None
    return OpenAIProvider(
        name="openai",
        api_key=key,
        base_url=base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
        max_tokens_param=options.pop("max_tokens_param", "max_completion_tokens"),
        **options,
    )
