"""Per-provider politeness: a requests/tokens-per-minute pacer and a bound on calls in flight.

Both are process-wide and thread-safe, because Prefect runs several shard tasks of one provider
at once, each in its own thread with its own event loop; a limit per event loop would multiply
the real rate by the number of shards. Across processes (several workers), cap the number of
shards per provider with a Prefect concurrency limit on the task tag ``provider:<prefix>``.

Pacing is smooth (no bursts): providers enforce their per-minute limits at sub-minute
granularity (OpenAI documents 60,000 RPM as 1,000 per second), so a burst at the start of a
minute is exactly what trips them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tasks.errors import ConfigError

DEFAULT_MAX_IN_FLIGHT = 64


@dataclass(frozen=True)
class ProviderLimits:
    """``rpm``/``tpm`` of None mean unlimited; ``max_in_flight`` bounds concurrent requests."""

    rpm: float | None = None
    tpm: float | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"provider limit {name} must be positive, got {value}")
        if self.max_in_flight < 1:
            raise ConfigError(f"provider limit max_in_flight must be >= 1, got "
                              f"{self.max_in_flight}")

    @classmethod
    def from_mapping(cls, where: str, raw: Mapping[str, Any] | ProviderLimits | None
                     ) -> ProviderLimits:
        """Limits from settings (``{"rpm": 500, "tpm": 200000, "max_in_flight": 32}``)."""
        if raw is None:
            return cls()
        if isinstance(raw, ProviderLimits):
            return raw
        unknown = set(raw) - {"rpm", "tpm", "max_in_flight"}
        if unknown:
            raise ConfigError(f"{where}: unknown limit(s) {', '.join(sorted(unknown))} "
                              "(allowed: rpm, tpm, max_in_flight)")
        try:
            return cls(
                rpm=None if raw.get("rpm") is None else float(raw["rpm"]),
                tpm=None if raw.get("tpm") is None else float(raw["tpm"]),
                max_in_flight=int(raw.get("max_in_flight") or DEFAULT_MAX_IN_FLIGHT),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: limits must be numbers ({exc})") from None


class RateLimiter:
    """Paces request starts to ``rpm`` and token use to ``tpm`` (virtual-scheduling, no burst).

    A caller reserves a start time; the reservation is booked immediately under a lock, so many
    threads and event loops can share one limiter and never overshoot. Tokens are reserved up
    front (an estimate: prompt plus ``max_tokens``, as providers count them) and settled against
    the real usage afterwards, returning what was not used.
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._lock = threading.Lock()
        self._next_request = 0.0
        self._next_token = 0.0
        self._paused_until = 0.0

    def reserve(self, tokens: int = 0) -> float:
        """Book a start; return how many seconds the caller must wait before starting."""
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            if self.rpm:
                start = max(start, self._next_request)
            if self.tpm and tokens > 0:
                start = max(start, self._next_token)
            if self.rpm:
                self._next_request = start + 60.0 / self.rpm
            if self.tpm and tokens > 0:
                self._next_token = start + tokens * 60.0 / self.tpm
            return start - now

    def settle(self, reserved: int, used: int) -> None:
        """Give back tokens reserved but not used (a call that failed or answered short)."""
        if self.tpm and reserved > used:
            with self._lock:
                self._next_token -= (reserved - used) * 60.0 / self.tpm

    def pause(self, seconds: float) -> None:
        """Hold every new start for ``seconds`` (a 429 said so: do not make the storm worse)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def acquire(self, tokens: int = 0,
                      sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        delay = self.reserve(tokens)
        if delay > 0:
            await sleep(delay)


class InflightGate:
    """A counting semaphore usable from several threads' event loops at once.

    ``asyncio.Semaphore`` belongs to one loop; this one hands a released slot to the oldest
    waiter through that waiter's own loop, so shard tasks in different threads share one bound.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = slots
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def in_use(self) -> int:
        with self._lock:
            return self.slots - self._free

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, fut))
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove((loop, fut))
                    queued = True
                except ValueError:
                    queued = False
            # Not queued any more: a slot was handed to us (or is on its way) — pass it on.
            if not queued and fut.done() and not fut.cancelled():
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            if not self._waiters:
                self._free += 1
                return
            loop, fut = self._waiters.popleft()
        try:
            loop.call_soon_threadsafe(self._hand_over, fut)
        except RuntimeError:  # that waiter's loop is closed: give the slot to the next one
            self.release()

    def _hand_over(self, fut: asyncio.Future[None]) -> None:
        if fut.done():  # cancelled between being dequeued and now
            self.release()
        else:
            fut.set_result(None)

    async def __aenter__(self) -> InflightGate:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


@dataclass
class _Shared:
    limits: ProviderLimits
    limiter: RateLimiter
    gate: InflightGate


_SHARED: dict[str, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def shared_limits(key: str, limits: ProviderLimits) -> tuple[RateLimiter, InflightGate]:
    """The process-wide limiter and gate for one provider endpoint (``key``).

    Providers built for the same endpoint share them; new limits replace the old ones (the next
    run after a settings change gets what it asked for).
    """
    with _SHARED_LOCK:
        shared = _SHARED.get(key)
        if shared is None or shared.limits != limits:
            shared = _Shared(limits, RateLimiter(limits.rpm, limits.tpm),
                             InflightGate(limits.max_in_flight))
            _SHARED[key] = shared
        return shared.limiter, shared.gate
