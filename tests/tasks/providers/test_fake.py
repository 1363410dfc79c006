"""The offline fake provider: deterministic, and its drifting model really drifts."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from tasks.errors import ProviderConfigError
from tasks.providers import CompletionRequest, ProviderRegistry
from tasks.providers.fake import FakeProvider

DRIFT = date(2026, 11, 10)


def _ask(provider: FakeProvider, model: str, when: datetime, n: int = 200,
         temperature: float = 0.0) -> list:
    async def go() -> list:
        return [
            await provider.complete(model, CompletionRequest(
                messages=[{"role": "user", "content": "q"}], prompt_id=f"p{i}",
                reference="42", as_of=when, temperature=temperature, seed=1))
            for i in range(n)
        ]
    return asyncio.run(go())


def _accuracy(completions: list) -> float:
    return sum("42" in (c.text or "") for c in completions) / len(completions)


def test_stable_model_is_deterministic_and_accurate() -> None:
    fake = FakeProvider(drift_date=DRIFT)
    before = _ask(fake, "stable", datetime(2026, 11, 1, tzinfo=UTC))
    after = _ask(fake, "stable", datetime(2026, 11, 20, tzinfo=UTC))
    assert [c.text for c in before] == [c.text for c in after]  # temperature 0: same every day
    assert 0.85 <= _accuracy(before) <= 0.95


def test_drifting_model_changes_accuracy_wording_and_latency_on_its_date() -> None:
    fake = FakeProvider(drift_date=DRIFT)
    before = _ask(fake, "drifting", datetime.combine(DRIFT - timedelta(days=1),
                                                     datetime.min.time(), UTC))
    after = _ask(fake, "drifting", datetime.combine(DRIFT, datetime.min.time(), UTC))
    assert _accuracy(before) > 0.85 and _accuracy(after) < 0.7
    assert any(c.text.startswith("The answer is") for c in before)
    assert any(c.text.startswith("Answer:") for c in after)
    mean = lambda cs: sum(c.latency_ms for c in cs) / len(cs)  # noqa: E731
    assert mean(after) > 1.4 * mean(before)


def test_drift_date_can_be_pinned_in_the_model_name() -> None:
    fake = FakeProvider(drift_date=date(2030, 1, 1))
    after = _ask(fake, "drifting@2026-11-10", datetime(2026, 11, 12, tzinfo=UTC))
    assert _accuracy(after) < 0.7


def test_unknown_fake_model_is_a_config_error_before_any_call() -> None:
    with pytest.raises(ProviderConfigError, match="unknown fake model 'fake/nope'"):
        ProviderRegistry().check(["fake/stable", "fake/nope"])
    with pytest.raises(ProviderConfigError, match="unknown provider 'nope'"):
        ProviderRegistry().check(["nope/model"])
    with pytest.raises(ProviderConfigError, match="must be 'provider/model'"):
        ProviderRegistry().check(["gpt-4o"])
