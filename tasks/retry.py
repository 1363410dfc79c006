"""Retries for provider calls: which failures are worth another try, and how long to wait.

Exponential backoff with jitter for 5xx, connection errors and timeouts; a 429 (or 503) that
says ``Retry-After`` waits at least that long. The SDKs' own retries are turned off, so these
are the only ones and every attempt is counted and paced by our limiter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from tasks.errors import ConfigError

# Statuses worth retrying besides 5xx: request timeout, conflict (a provider's transient lock),
# too early, rate limited.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
# Statuses that say the key is wrong: every further call would fail the same way.
AUTH_STATUS = frozenset({401, 403})


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` counts the first try. Delays in seconds."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    # A provider asking for a longer wait than this is treated as down for this call.
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ConfigError("retry delays must not be negative")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay after failed attempt ``attempt`` (1-based): half fixed, half random.

        The fixed half keeps a floor under the wait; the random half spreads many callers that
        failed together so they do not come back together.
        """
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def delay(self, attempt: int, retry_after: float | None,
              rng: random.Random | None = None) -> float:
        if retry_after is not None:
            # At least what the provider asked for, plus a little spread.
            return retry_after + (rng or random).uniform(0, min(1.0, 0.1 * retry_after))
        return self.backoff(attempt, rng)


@dataclass(frozen=True)
class Failure:
    """One failed attempt, classified."""

    message: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None

    @property
    def rate_limited(self) -> bool:
        return self.status == 429

    @property
    def auth(self) -> bool:
        return self.status in AUTH_STATUS


def status_retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUS


def parse_retry_after(headers: Any, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``retry-after`` (seconds or a date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
