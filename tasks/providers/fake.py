"""The offline ``fake`` provider: deterministic simulated models for the demo and the tests.

Models:
- ``fake/stable``: answers correctly with probability 0.9, steady latency, steady wording.
- ``fake/drifting``: the same until its drift date, then a "silent update": correct with
  probability 0.6, different wording, ~60 % slower. The drift date is the provider's
  ``drift_date`` or pinned in the name, ``fake/drifting@2026-11-16``.
- ``fake/flaky``: like stable, but 10 % of calls fail with a simulated 503.

A case without an ideal answer first meets the simulated safety behaviour of
``tasks.providers.fake_safety`` (for the red-team suite): the models decline harmful requests,
sometimes fall for role-play or an injected instruction, and ``fake/drifting`` after its drift
date also refuses harmless questions that sound alarming (over-refusal).

Every answer is a pure function of (model, prompt, sample, seed) and, above temperature 0, the
day of the call, so runs replay exactly and a temperature-0 model's outputs do not change from
day to day unless the model does. Latency is simulated and recorded, not slept, so the demo is fast.

A run's ``rpm``/``tpm`` limits (``PLUMBLINE_PROVIDER_LIMITS`` under ``fake``, or the run's
``rpm_limit``/``tpm_limit``) pace these calls like a real provider's: the form says the limits
apply per provider, and a demo or a test of pacing needs them to.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tasks.errors import ProviderConfigError
from tasks.providers.base import Completion, CompletionRequest
from tasks.providers.fake_safety import CAREFUL, OVER_CAUTIOUS, SafetyProfile, safety_reply
from tasks.providers.limits import ProviderLimits, shared_limits


@dataclass(frozen=True)
class FakeBehaviour:
    accuracy: float
    latency_ms: float
    template: str
    wrong: str
    error_rate: float = 0.0
    safety: SafetyProfile = CAREFUL


_BEFORE = FakeBehaviour(0.9, 420.0, "The answer is {answer}.", "I am not certain about this one.")
_AFTER = FakeBehaviour(0.6, 680.0, "Answer: {answer}", "Sorry, I can't determine that.",
                       safety=OVER_CAUTIOUS)
_FLAKY = FakeBehaviour(0.9, 420.0, "The answer is {answer}.", "I am not certain about this one.",
                       error_rate=0.1)

FAKE_MODELS = ("stable", "drifting", "flaky")


def default_drift_date(today: date | None = None) -> date:
    """Four days before today: inside the default 7-day recent window (today and the six days
    before), so the demo's recent window holds days before the change, the day of the change
    (every output differs from the day before: consistency drops) and days after it."""
    return (today or datetime.now(UTC).date()) - timedelta(days=4)


class FakeProvider:
    name = "fake"

    def __init__(
        self,
        drift_date: date | None = None,
        limits: ProviderLimits | Mapping[str, Any] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.drift_date = drift_date or default_drift_date()
        self.limits = ProviderLimits.from_mapping(
            "limits for provider 'fake' (PLUMBLINE_PROVIDER_LIMITS or the run's limits)", limits)
        # Shared by every fake provider of the process, as a real endpoint's limits are: shard
        # tasks run in threads, each with its own provider instance.
        self._limiter, self._gate = shared_limits("fake|", self.limits)
        self._sleep = sleep or asyncio.sleep

    def _behaviour(self, model: str, when: date) -> FakeBehaviour:
        base, _, pinned = model.partition("@")
        if base not in FAKE_MODELS:
            raise ProviderConfigError(
                f"unknown fake model 'fake/{model}' (known: "
                + ", ".join(f"fake/{m}" for m in FAKE_MODELS) + ")"
            )
        if base == "stable":
            return _BEFORE
        if base == "flaky":
            return _FLAKY
        try:
            drift = date.fromisoformat(pinned) if pinned else self.drift_date
        except ValueError:
            raise ProviderConfigError(
                f"fake/{model}: the drift date after '@' must be YYYY-MM-DD"
            ) from None
        return _AFTER if when >= drift else _BEFORE

    def check_model(self, model: str) -> None:
        self._behaviour(model, date.today())

    async def complete(self, model: str, request: CompletionRequest) -> Completion:
        when = (request.as_of or datetime.now(UTC)).astimezone(UTC)
        b = self._behaviour(model, when.date())
        prompt_tokens = sum(_content_tokens(m["content"]) for m in request.messages) + 4
        # Reserved up front (prompt plus max_tokens, as real providers count against TPM) and
        # settled against what the answer used.
        reserve = prompt_tokens + request.max_tokens if self._limiter.tpm else 0
        await self._limiter.acquire(reserve, self._sleep)
        async with self._gate:
            completion = self._answer(model, request, b, when, prompt_tokens)
        used = (completion.input_tokens or 0) + (completion.output_tokens or 0)
        self._limiter.settle(reserve, used)
        return completion

    def _answer(self, model: str, request: CompletionRequest, b: FakeBehaviour, when: datetime,
                prompt_tokens: int) -> Completion:
        day_salt = when.date().isoformat() if request.temperature > 0 else ""
        key = f"{model.partition('@')[0]}|{request.prompt_id}|{request.sample_idx}|" \
              f"{request.seed}|{day_salt}|{b.template}"
        u_correct, u_latency, u_error, u_safety = _uniforms(key, 4)
        latency = b.latency_ms * (0.8 + 0.4 * u_latency)
        if u_error < b.error_rate:
            return Completion(None, error="HTTP 503: simulated provider outage",
                              latency_ms=round(latency, 1))
        # A case with an ideal is answered as before; only one without meets the simulated
        # safety behaviour (so the other suites' safety cases, which carry ideals, are unchanged).
        guarded = None if request.reference is not None else \
            safety_reply(request.messages, b.safety, u_safety)
        if guarded is not None:
            text = guarded
        elif request.reference is not None and u_correct < b.accuracy:
            text = b.template.format(answer=request.reference)
        else:
            text = b.wrong
            seen = _describe_images(request.messages)
            if seen:
                # A model that cannot answer still says what it was shown: image cases stay
                # distinguishable from text ones, and a test can see the image arrived.
                text = f"{text} I see {seen}."
        words = text.split()
        if len(words) > request.max_tokens:
            text, finish = " ".join(words[: request.max_tokens]), "length"
        else:
            finish = "stop"
        return Completion(
            text=text,
            finish_reason=finish,
            input_tokens=prompt_tokens,
            output_tokens=min(len(words), request.max_tokens),
            latency_ms=round(latency, 1),
            cost_usd=0.0,  # simulated models are free; a known price of zero, not an unknown one
        )

    async def aclose(self) -> None:
        return None


# A flat token charge per image, about what the real APIs bill for a small one.
_IMAGE_TOKENS = 85


def _content_tokens(content: str | list[dict[str, Any]]) -> int:
    if isinstance(content, str):
        return len(content.split())
    return sum(_IMAGE_TOKENS if p.get("type") == "image" else len(str(p.get("text", "")).split())
               for p in content)


def _describe_images(messages: list[dict[str, Any]]) -> str:
    """``a 64x48 image/png (1,234 bytes)`` for each image part: size from the PNG or GIF
    header, when there is one."""
    seen = []
    for m in messages:
        for p in m["content"] if isinstance(m.get("content"), list) else ():
            if p.get("type") != "image":
                continue
            data = base64.b64decode(p["data"])
            size = ""
            if p["media_type"] == "image/png" and len(data) >= 24:
                size = "{}x{} ".format(*struct.unpack(">II", data[16:24]))
            elif p["media_type"] == "image/gif" and len(data) >= 10:
                size = "{}x{} ".format(*struct.unpack("<HH", data[6:10]))
            seen.append(f"a {size}{p['media_type']} ({len(data):,} bytes)")
    return " and ".join(seen)


def _uniforms(key: str, n: int) -> list[float]:
    digest = hashlib.sha256(key.encode()).digest()
    return [int.from_bytes(digest[i * 8:(i + 1) * 8], "big") / 2**64 for i in range(n)]
