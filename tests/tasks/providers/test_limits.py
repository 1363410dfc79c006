"""Pacing, the in-flight bound, retry timing and the pricing table."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from tasks.errors import ConfigError
from tasks.providers.limits import InflightGate, ProviderLimits, RateLimiter
from tasks.providers.pricing import PriceTable
from tasks.retry import RetryPolicy, parse_retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rpm_spaces_requests_evenly_without_a_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=600, clock=clock)  # one every 0.1 s
    waits = [limiter.reserve() for _ in range(11)]
    assert waits[0] == 0
    assert waits[10] == pytest.approx(1.0)
    # 11 starts in the first second at most: the rate never exceeds the limit.
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(waits))


def test_tpm_paces_by_tokens_and_refunds_what_was_not_used() -> None:
    clock = Clock()
    limiter = RateLimiter(tpm=6000, clock=clock)  # 100 tokens a second
    assert limiter.reserve(500) == 0
    assert limiter.reserve(100) == pytest.approx(5.0)  # waits for the first call's 500 tokens
    limiter.settle(reserved=100, used=20)  # the second call answered short
    assert limiter.reserve(100) == pytest.approx(5.2)


def test_pause_holds_every_new_start() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    limiter.pause(3.0)
    assert limiter.reserve() == pytest.approx(3.0)
    clock.now += 5
    assert limiter.reserve() == 0


def test_limits_from_settings_are_validated() -> None:
    assert ProviderLimits.from_mapping("x", {"rpm": 500, "max_in_flight": 8}) == \
        ProviderLimits(rpm=500, tpm=None, max_in_flight=8)
    with pytest.raises(ConfigError, match=r"unknown limit.*rps"):
        ProviderLimits.from_mapping("PLUMBLINE_PROVIDER_LIMITS.openai", {"rps": 3})
    with pytest.raises(ConfigError, match="rpm must be positive"):
        ProviderLimits.from_mapping("x", {"rpm": 0})


def test_inflight_gate_bounds_calls_across_threads_and_event_loops() -> None:
    gate = InflightGate(3)
    lock = threading.Lock()
    current = peak = 0

    async def call() -> None:
        nonlocal current, peak
        async with gate:
            with lock:
                current += 1
                peak = max(peak, current)
            await asyncio.sleep(0.01)
            with lock:
                current -= 1

    async def many() -> None:
        await asyncio.gather(*(call() for _ in range(20)))

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert peak == 3
    assert gate.in_use == 0


def test_a_cancelled_waiter_does_not_leak_a_slot() -> None:
    gate = InflightGate(1)

    async def scenario() -> None:
        await gate.acquire()
        waiter = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()
        gate.release()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.wait_for(gate.acquire(), 1)  # the slot is still there
        gate.release()

    asyncio.run(scenario())
    assert gate.in_use == 0


def test_backoff_grows_exponentially_with_jitter_under_a_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)]:
        d = policy.backoff(attempt, rng)
        assert ceiling / 2 <= d <= ceiling
    spread = {round(policy.backoff(3, rng), 3) for _ in range(20)}
    assert len(spread) > 10  # callers that failed together come back apart
    assert policy.delay(1, retry_after=5.0, rng=rng) >= 5.0


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "12"}) == 12.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_pricing_exact_alias_pattern_and_unknown(tmp_path: Path) -> None:
    table = PriceTable.load()
    assert table.cost("openai/gpt-4o", 1_000_000, 0) == pytest.approx(2.5)
    assert table.cost("openai/gpt-4o-2024-08-06", 0, 1_000_000) == pytest.approx(10.0)
    # A dated snapshot that is not listed is unknown, not guessed from its family.
    assert table.cost("openai/gpt-4o-2030-01-01", 10, 10) is None
    assert table.cost("vllm/llama", 10, 10) is None
    assert table.cost("openai/gpt-4o", None, 10) is None

    extra = tmp_path / "prices.toml"
    extra.write_text('[models."vllm/*"]\ninput = 0\noutput = 0\n'
                     '[models."openai/gpt-4o"]\ninput = 1.0\noutput = 2.0\n')
    table = PriceTable.load(extra)
    assert table.cost("vllm/llama", 10, 10) == 0.0  # known to be free: 0, not null
    assert table.cost("openai/gpt-4o", 1_000_000, 1_000_000) == pytest.approx(3.0)


def test_a_bad_pricing_file_names_the_file_and_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "prices.toml"
    bad.write_text('[models."openai/x"]\ninput = "cheap"\noutput = 1\n')
    with pytest.raises(ConfigError, match=r"prices\.toml.*openai/x.*input"):
        PriceTable.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        PriceTable.load(tmp_path / "missing.toml")


def test_real_rate_limiter_holds_the_rate_in_wall_time() -> None:
    limiter = RateLimiter(rpm=1200)  # 20 a second

    async def go() -> float:
        start = time.monotonic()
        await asyncio.gather(*(limiter.acquire() for _ in range(11)))
        return time.monotonic() - start

    assert asyncio.run(go()) >= 0.5 - 0.01
