"""``anthropic/...`` through the official ``anthropic`` SDK (``AsyncAnthropic``), Messages API.

System messages move to the API's ``system`` field. The API version the 2.x SDK speaks
(2026-10-21) has no sampling parameters at all: ``temperature`` (and ``seed``, which Anthropic
never had) are recorded on the row but not sent, because sending them is an HTTP 400. Set
``ANTHROPIC_API_VERSION=2023-06-01`` (or the ``api_version`` option) to pin the older API
version, which still takes ``temperature``; Plumbline then sends it. Stop reasons are mapped to
the OpenAI names every other provider uses (``end_turn`` → ``stop``, ``max_tokens`` →
``length``), so finish reasons compare across providers. A case's image parts are sent as
``image`` blocks with a ``base64`` source and their media type.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx2

from tasks.errors import ProviderConfigError
from tasks.providers.base import Completion, CompletionRequest
from tasks.providers.http_base import HTTPProvider, MalformedResponse, classify_sdk_error
from tasks.providers.keys import resolve_api_key
from tasks.retry import Failure

# The first API version without temperature/top_p/top_k.
SAMPLING_REMOVED_IN = "2026-10-21"

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _import_sdk() -> Any:
    try:
        import anthropic
    except ImportError:  # pragma: no cover - anthropic is a declared dependency
        raise ProviderConfigError(
            "the anthropic provider needs the 'anthropic' package: pip install 'anthropic>=2.12'"
        ) from None
    return anthropic


class AnthropicProvider(HTTPProvider):
    """Messages through ``anthropic.AsyncAnthropic`` with the SDK's retries off (ours count)."""

    def __init__(self, *, api_version: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_version = api_version
        self._anthropic = _import_sdk()

    @property
    def sends_temperature(self) -> bool:
        return self.api_version is not None and self.api_version < SAMPLING_REMOVED_IN

    def _sdk_module(self) -> Any:
        return self._anthropic

    def _make_sdk(self, http: httpx2.AsyncClient) -> Any:
        return self._anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=httpx2.Timeout(self.timeout, connect=min(10.0, self.timeout)),
            http_client=http,
            default_headers={"anthropic-version": self.api_version} if self.api_version else None,
        )

    async def _send(self, sdk: Any, model: str, request: CompletionRequest) -> Completion:
        system = [m["content"] for m in request.messages if m.get("role") == "system"]
        body: dict[str, Any] = {
            "model": model,
            "messages": anthropic_messages(request.messages),
            "max_tokens": request.max_tokens,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if self.sends_temperature:
            body["temperature"] = request.temperature
        body.update(request.extra)
        # The SDK's generic post(), for the same reason as the openai provider's.
        response = await sdk.post("/v1/messages", body=body, cast_to=httpx2.Response)
        return parse_message(response.content)

    def _classify(self, exc: Exception) -> Failure:
        return classify_sdk_error(exc, self._anthropic, self.timeout)


def anthropic_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The non-system messages in Messages API form: each image part becomes
    ``{"type": "image", "source": {"type": "base64", "media_type": ..., "data": ...}}``."""
    return [{**m, "content": [_anthropic_part(p) for p in m["content"]]}
            if isinstance(m.get("content"), list) else m
            for m in messages if m.get("role") != "system"]


def _anthropic_part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "image":
        return {"type": "image", "source": {"type": "base64", "media_type": part["media_type"],
                                            "data": part["data"]}}
    return {"type": "text", "text": part["text"]}


def parse_message(content: bytes) -> Completion:
    """Text, stop reason and tokens from a Messages API response body."""
    data = json.loads(content)
    if not isinstance(data, dict):
        raise MalformedResponse("the body is not a JSON object")
    blocks = data.get("content")
    if not isinstance(blocks, list):
        raise MalformedResponse("no content blocks in the response")
    # Thinking and tool-use blocks are not the answer; the text blocks are.
    text = "".join(b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text"
                   and isinstance(b.get("text"), str))
    stop = data.get("stop_reason")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Completion(
        text=text,
        finish_reason=STOP_REASONS.get(stop, stop) if isinstance(stop, str) else None,
        input_tokens=_int_or_none(usage.get("input_tokens")),
        output_tokens=_int_or_none(usage.get("output_tokens")),
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def anthropic_factory(
    *, api_key: str | None = None, base_url: str | None = None, secret_block: str | None = None,
    **options: Any,
) -> AnthropicProvider:
    """``anthropic/<model>``: key from ``ANTHROPIC_API_KEY`` (or a Secret block), optional
    ``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_API_VERSION``."""
    key = resolve_api_key("anthropic", ["ANTHROPIC_API_KEY"], explicit=api_key,
                          secret_block=secret_block)
    assert key is not None
    return AnthropicProvider(
        name="anthropic",
        api_key=key,
        api_version=options.pop("api_version", None)
        or os.environ.get("ANTHROPIC_API_VERSION") or None,
        base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com",
        **options,
    )
