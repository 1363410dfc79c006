"""The offline fake provider: deterministic, and its drifting model really drifts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tasks.catalog import load_suite
from tasks.errors import ConfigError, ProviderConfigError
from tasks.providers import CompletionRequest, ProviderRegistry
from tasks.providers.fake import FakeProvider
from tasks.run.plan import provider_options, resolve_config
from tasks.run.shard import run_shard
from tasks.storage.local import LocalStore
from tests.support.helpers import write_suite

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


def test_a_runs_rpm_limit_paces_the_fake_provider_too(tmp_path: Path) -> None:
    """Issue 16, item 11: the form says rpm_limit applies per provider; it was silently ignored
    for ``fake``. 600 requests per minute is one start every 0.1 s: 8 cells take >= 0.7 s."""
    suite = load_suite(write_suite(tmp_path / "paced", [
        {"id": f"c{i}", "input": "2+2?", "ideal": "4", "assertion": {"type": "contains"}}
        for i in range(8)]))
    config = resolve_config(suite, run_id="paced", samples=1, concurrency=8)
    store = LocalStore(tmp_path / "data")

    def timed(**limits: float) -> float:
        opts = provider_options(["fake/stable"], **limits)
        started = time.monotonic()
        rows = run_shard(suite, "fake/stable", suite.cases, config, store, provider_options=opts)
        assert len(rows) == 8
        return time.monotonic() - started

    assert provider_options(["fake/stable"], rpm=600)["fake"] == {"limits": {"rpm": 600}}
    assert timed(rpm=600) >= 0.7
    assert timed() < 0.5  # unlimited, as before: the simulated latency is not slept


def test_tpm_is_reserved_up_front_and_settled_against_the_answer() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    # 6,000 tokens a minute = 100 a second; each call reserves its prompt plus max_tokens (100).
    fake = FakeProvider(drift_date=DRIFT, limits={"tpm": 6000}, sleep=sleep)
    request = CompletionRequest(messages=[{"role": "user", "content": "q"}], prompt_id="p",
                                reference="42", max_tokens=100)

    async def go() -> None:
        for _ in range(3):
            await fake.complete("stable", request)

    asyncio.run(go())
    # The first starts at once; each next one waits for the 9 tokens the one before really used
    # (0.09 s), not for the 105 it reserved (1.05 s).
    assert len(waits) == 2 and all(0 < w < 0.2 for w in waits)
    with pytest.raises(ConfigError, match="rpm must be positive"):
        FakeProvider(limits={"rpm": 0})
