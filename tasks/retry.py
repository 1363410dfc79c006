"""One retry policy and one ``Retry-After`` parser for every outbound HTTP call.

Provider calls, ``plumbline submit`` and the drift webhook all retry with exponential backoff
(with jitter for provider calls, which fail together and must not come back together) and wait at
least what a 429 or 503 asks for in ``Retry-After``. For provider calls the SDKs' own retries are
turned off, so these are the only ones and every attempt is counted and paced by our limiter.
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
    """``max_attempts`` counts the first try. Delays in seconds.

    The wait after failed attempt *n* is ``base_delay * multiplier ** (n - 1)``, capped at
    ``max_delay``; with ``jitter`` half of it is random. A ``Retry-After`` answer replaces the
    backoff: the caller waits what was asked (plus a little spread with ``jitter``), at most
    ``max_retry_after``. Provider calls treat a longer ask as "down for this call" and give up
    (``asks_too_much``); the submit client and the webhook wait the cap.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: bool = True
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ConfigError("retry delays must not be negative")
        if self.multiplier < 1:
            raise ConfigError(f"multiplier must be >= 1, got {self.multiplier}")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay after failed attempt ``attempt`` (1-based); with jitter, half fixed, half random.

        The fixed half keeps a floor under the wait; the random half spreads many callers that
        failed together so they do not come back together.
        """
        ceiling = min(self.max_delay, self.base_delay * self.multiplier ** (attempt - 1))
        if not self.jitter:
            return ceiling
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def delay(self, attempt: int, retry_after: float | None,
              rng: random.Random | None = None) -> float:
        """The wait before the next attempt: the server's ``Retry-After`` if it sent one."""
        if retry_after is not None:
            wait = min(max(retry_after, 0.0), self.max_retry_after)
            if not self.jitter:
                return wait
            # At least what the server asked for, plus a little spread.
            return wait + (rng or random).uniform(0, min(1.0, 0.1 * wait))
        return self.backoff(attempt, rng)

    def asks_too_much(self, retry_after: float | None) -> bool:
        """Whether a ``Retry-After`` is longer than this policy will wait."""
        return (retry_after or 0.0) > self.max_retry_after


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
