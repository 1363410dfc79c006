"""OpenAI-compatible endpoints: one ``ChatCompletionsProvider`` each (plain HTTP, no SDK),
differing by base URL and key.

They send the body OpenAI's provider sends, a case's images as OpenAI does (``image_url`` parts
with a data URL); a server whose model cannot see images answers with an error, which becomes an
error row.

| prefix | base URL (override with the env var) | key |
| --- | --- | --- |
| ``openrouter/`` | ``https://openrouter.ai/api/v1`` (``OPENROUTER_BASE_URL``) | ``OPENROUTER_API_KEY`` |
| ``groq/`` | ``https://api.groq.com/openai/v1`` (``GROQ_BASE_URL``) | ``GROQ_API_KEY`` |
| ``gemini/`` | ``https://generativelanguage.googleapis.com/v1beta/openai/`` (``GEMINI_BASE_URL``) | ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` |
| ``vllm/`` | ``http://localhost:8000/v1`` (``VLLM_BASE_URL``) | ``VLLM_API_KEY``, optional |
| ``ollama/`` | ``http://localhost:11434/v1`` (``OLLAMA_BASE_URL``, or ``OLLAMA_HOST``) | none |
| ``openai-compatible/`` | required: ``OPENAI_COMPATIBLE_BASE_URL`` | ``OPENAI_COMPATIBLE_API_KEY``, optional |
"""  # noqa: E501

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tasks.errors import ProviderConfigError
from tasks.providers.keys import resolve_api_key
from tasks.providers.openai_provider import ChatCompletionsProvider


@dataclass(frozen=True)
class CompatEndpoint:
    prefix: str
    base_url_env: str
    default_base_url: str | None
    key_envs: tuple[str, ...]
    key_required: bool
    headers: tuple[tuple[str, str], ...] = ()


ENDPOINTS: dict[str, CompatEndpoint] = {
    e.prefix: e
    for e in (
        # OpenRouter asks apps to identify themselves; it ranks and rate-limits by it.
        CompatEndpoint("openrouter", "OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1",
                       ("OPENROUTER_API_KEY",), True,
                       (("X-Title", "Plumbline"),)),
        CompatEndpoint("groq", "GROQ_BASE_URL", "https://api.groq.com/openai/v1",
                       ("GROQ_API_KEY",), True),
        CompatEndpoint("gemini", "GEMINI_BASE_URL",
                       "https://generativelanguage.googleapis.com/v1beta/openai/",
                       ("GEMINI_API_KEY", "GOOGLE_API_KEY"), True),
        CompatEndpoint("vllm", "VLLM_BASE_URL", "http://localhost:8000/v1",
                       ("VLLM_API_KEY",), False),
        CompatEndpoint("ollama", "OLLAMA_BASE_URL", None, ("OLLAMA_API_KEY",), False),
        CompatEndpoint("openai-compatible", "OPENAI_COMPATIBLE_BASE_URL", None,
                       ("OPENAI_COMPATIBLE_API_KEY",), False),
    )
}


def _base_url(endpoint: CompatEndpoint, explicit: str | None) -> str:
    if explicit:
        return checked_url(endpoint.prefix, explicit, "its base_url option")
    from_env = os.environ.get(endpoint.base_url_env, "").strip()
    if from_env:
        return checked_url(endpoint.prefix, from_env, endpoint.base_url_env)
    if endpoint.prefix == "ollama":
        host = os.environ.get("OLLAMA_HOST", "").strip() or "localhost:11434"
        if not host.startswith(("http://", "https://")):
            host = f"http://{host}"
        return checked_url(endpoint.prefix, f"{host.rstrip('/')}/v1", "OLLAMA_HOST")
    if endpoint.default_base_url is None:
        raise ProviderConfigError(
            f"provider {endpoint.prefix!r} needs a base URL: set {endpoint.base_url_env} "
            "(for example http://127.0.0.1:8080/v1)"
        )
    return endpoint.default_base_url


def checked_url(prefix: str, url: str, where: str) -> str:
    """``url`` if it is an http(s) URL with a host, else a ``ProviderConfigError`` naming
    ``where`` it came from: a typo there would otherwise fail every call, after retries. The
    error shows the URL without any user:password part."""
    shown = re.sub(r"//[^/@]*@", "//***@", url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        raise ProviderConfigError(f"provider {prefix!r}: {where} = {shown!r} is not a URL "
                                  f"({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderConfigError(
            f"provider {prefix!r}: {where} = {shown!r} is not an http(s) URL with a host "
            "(for example http://127.0.0.1:8080/v1)")
    return url


def compat_factory(prefix: str) -> Any:
    """The registry factory for one compatible endpoint."""
    endpoint = ENDPOINTS[prefix]

    def factory(*, api_key: str | None = None, base_url: str | None = None,
                secret_block: str | None = None, **options: Any) -> ChatCompletionsProvider:
        url = _base_url(endpoint, base_url)
        key = resolve_api_key(prefix, list(endpoint.key_envs), explicit=api_key,
                              secret_block=secret_block, required=endpoint.key_required)
        # Without a key no Authorization header is sent: self-hosted servers need none.
        return ChatCompletionsProvider(
            name=prefix,
            api_key=key or "",
            base_url=url,
            default_headers=dict(endpoint.headers),
            **options,
        )

    return factory
