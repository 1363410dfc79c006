"""The provider protocol: an async ``complete()`` returning a completion record.

A failed call is a ``Completion`` with ``error`` set, never an exception: the run goes on and the
failure is kept as a row. Configuration problems (no key, unknown provider) raise
``ProviderConfigError`` before any call is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tasks.errors import ProviderConfigError


@dataclass(frozen=True)
class CompletionRequest:
    """One call: the messages plus sampling parameters.

    ``reference`` is the case's ideal answer. Only the offline ``fake`` provider reads it (to
    simulate a model that knows the answer with some probability); real providers never send it.
    ``as_of`` is the simulated time of the call, also only for ``fake``. A message's content
    is a string or a list of parts (``{"type": "text", ...}``, and image parts holding base64
    ``data`` and its ``media_type``: ``tasks/suites/images.py``).
    """

    messages: list[dict[str, Any]]
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None
    sample_idx: int = 0
    prompt_id: str = ""
    reference: str | None = None
    as_of: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    """What one call produced. ``error`` set means it failed and ``text`` is None."""

    text: str | None
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    error: str | None = None
    # How many HTTP attempts the call took (0: not sent, e.g. after an auth failure).
    attempts: int = 1
    # Served from the response cache, not by the provider.
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class Provider(Protocol):
    """Implementations: ``fake`` (offline), and the real APIs added by their own modules."""

    name: str

    async def complete(self, model: str, request: CompletionRequest) -> Completion: ...

    async def aclose(self) -> None: ...


def split_model_id(model_id: str) -> tuple[str, str]:
    """``"openai/gpt-4o"`` → ``("openai", "gpt-4o")``; a clear error without a prefix."""
    prefix, sep, model = model_id.partition("/")
    if not sep or not prefix or not model:
        raise ProviderConfigError(
            f"model id {model_id!r} must be 'provider/model' (for example 'fake/stable', "
            "'openai/gpt-4o')"
        )
    return prefix, model
