"""What a custom target (``http/<name>``, ``python/<module>:<function>``) is given for one call,
and the small result it may answer with.

Both kinds of target see the same values: an HTTP target's body template names them as
placeholders (``{{input}}``), a Python target receives them as attributes of one ``TargetCall``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.providers.base import CompletionRequest

# The values a body template may name, in the order the docs list them.
PLACEHOLDERS = ("input", "messages", "prompt_id", "sample_idx", "temperature", "max_tokens",
                "seed", "model")


@dataclass(frozen=True)
class TargetCall:
    """One call of a target: the case's input and messages, and the call's parameters.

    ``input`` is the text of the last user message (the case's input for a one-turn case; its
    text parts joined when it has image parts); ``messages`` is the whole conversation as chat
    messages, system prompt first when the run has one, content as the run holds it (a string,
    or parts such as ``{"type": "image", "media_type", "data": <base64>}``). ``model`` is the
    target's name: ``rag`` for ``http/rag``, ``pkg.mod:fn`` for ``python/pkg.mod:fn``.
    """

    input: str
    messages: list[dict[str, Any]]
    prompt_id: str
    sample_idx: int
    temperature: float
    max_tokens: int
    seed: int | None
    model: str

    @classmethod
    def from_request(cls, model: str, request: CompletionRequest) -> TargetCall:
        return cls(
            input=last_user_text(request.messages),
            # A copy each: a target that edits its messages must not change the next call's.
            messages=[_copy(m) for m in request.messages],
            prompt_id=request.prompt_id,
            sample_idx=request.sample_idx,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            seed=request.seed,
            model=model,
        )

    def values(self) -> dict[str, Any]:
        """The placeholder values, by name (``PLACEHOLDERS``)."""
        return {name: getattr(self, name) for name in PLACEHOLDERS}


@dataclass(frozen=True)
class TargetResult:
    """A target's answer. A Python target may also return a plain string, or a dict with these
    keys; token counts are optional (None: unknown, and no cost is computed)."""

    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None


def _copy(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list):  # content parts (text, images): copied one level deeper
        return {**message, "content": [dict(p) if isinstance(p, dict) else p for p in content]}
    return dict(message)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message; text parts joined when its content is a list."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(str(part.get("text", "")) for part in content
                             if isinstance(part, dict) and part.get("type") == "text")
        return ""
    return ""
