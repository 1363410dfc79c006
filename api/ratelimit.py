"""Counting requests per client for the rate limit: in this process (``SlidingWindowLimiter``) or
shared by every API process on the host (``SharedWindowLimiter``), and ``RateCounter``, which
uses the shared count and falls back to the process's own.

The shared count lives in a small SQLite database beside the spool (``ratelimit.sqlite3``), so
``--workers N`` does not multiply the limit: one statement per request (~20-40 µs), one-second
buckets per client, deleted once they leave the one-minute window. A request that finds the
database busy with another process's write waits for it without blocking the event loop; if the
database is unusable, each process counts on its own (logged) rather than failing requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from api.spool import ProcessLock

log = logging.getLogger(__name__)

RATE_DB_NAME = "ratelimit.sqlite3"
# Expired buckets are deleted this often per process: the table holds about one window of
# clients (at most 60 rows per client IP), never a history.
RATE_PRUNE_EVERY_S = 10.0
# How long a request waits for another process's write to the counts before it is counted by
# this process alone (a lock is normally held for microseconds).
_RATE_LOCK_WAIT_S = 1.0
# Between the first failure and the next warning about it, so a broken database logs once a minute.
_RATE_WARN_EVERY_S = 60.0


class SlidingWindowLimiter:
    """At most ``limit`` requests per ``window`` seconds per key (an exact sliding log)."""

    def __init__(self, limit: int, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._calls = 0

    def hit(self, key: str) -> float:
        """Record a request; 0 when allowed, else the seconds until one would be."""
        now = self.clock()
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        cutoff = now - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= self.limit:
            return hits[0] + self.window - now
        hits.append(now)
        self._calls += 1
        if self._calls % 4096 == 0:
            self._prune(cutoff)
        return 0.0

    def _prune(self, cutoff: float) -> None:
        # Forget idle clients so memory follows the active ones, not everyone ever seen.
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= cutoff]:
            del self._hits[key]


_RATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS hits (
    client TEXT NOT NULL,
    second INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (client, second)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hits_second ON hits(second);
"""
# One atomic statement: count the client's hits in the window and add this one only if the sum
# is under the limit. A write statement takes SQLite's write lock before it reads, so two
# processes can never both see 59 and both add the 60th.
_RATE_HIT = """
INSERT INTO hits (client, second, n)
SELECT :client, :second, 1
WHERE (SELECT coalesce(sum(n), 0) FROM hits WHERE client = :client AND second > :start) < :limit
ON CONFLICT (client, second) DO UPDATE SET n = n + 1
"""


def _open_rate_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # The counts need no durability (a lost minute of counts only resets some windows), so
        # no fsync on the request path; a database an OS crash left damaged is recreated.
        conn.execute("PRAGMA synchronous=OFF")
        conn.executescript(_RATE_SCHEMA)
        (check,) = conn.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        # From here on a busy database raises at once: the middleware waits asynchronously.
        conn.execute("PRAGMA busy_timeout=0")
    except BaseException:
        conn.close()
        raise
    return conn


class SharedWindowLimiter:
    """At most ``limit`` requests per ``window`` seconds per key, counted in a SQLite database in
    ``directory`` that every process on the host using that directory shares.

    Hits are counted in one-second buckets, one row per (key, second): a request leaves the
    window 59-60 s after it was made (one second of resolution), and the table holds at most
    ``window`` rows per active key, whatever the limit. ``hit`` raises ``sqlite3.Error`` when the
    database is busy (another process is writing) or unusable; the caller decides what to do.
    """

    def __init__(self, directory: Path, limit: int, window: int = 60,
                 clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock  # wall time: every process on the host must agree on the buckets
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / RATE_DB_NAME
        # Opening (and recreating a damaged database) is one process at a time.
        lock = ProcessLock(directory / (RATE_DB_NAME + ".lock"))
        try:
            with lock:
                try:
                    self._conn = _open_rate_db(self.path)
                except sqlite3.OperationalError:
                    raise  # busy, read-only, I/O: the file may be fine and in use elsewhere
                except sqlite3.DatabaseError as exc:  # not a database, or damaged
                    log.warning("rate-limit database %s is unusable (%s): recreating it",
                                self.path, exc)
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                    self._conn = _open_rate_db(self.path)
        finally:
            lock.close()
        self._lock = threading.Lock()  # one connection; test clients may call from threads
        self._next_prune = 0.0

    def hit(self, key: str) -> float:
        """Record a request; 0 when allowed, else the seconds until one would be."""
        now = self.clock()
        second = math.floor(now)
        start = second - self.window
        with self._lock:
            cur = self._conn.execute(_RATE_HIT, {"client": key, "second": second,
                                                 "start": start, "limit": self.limit})
            if cur.rowcount:
                if time.monotonic() >= self._next_prune:
                    # Busy or failing: pruning waits for a later request.
                    with contextlib.suppress(sqlite3.Error):
                        self._delete_expired(now)
                return 0.0
            (oldest,) = self._conn.execute(
                "SELECT min(second) FROM hits WHERE client = ? AND second > ?", (key, start)
            ).fetchone()
        # The oldest bucket leaves the window at its second + window.
        return max(0.001, (oldest if oldest is not None else second) + self.window - now)

    def prune(self, now: float | None = None) -> int:
        """Delete buckets outside the window (and any from the future, after a clock step back);
        return how many. ``hit`` does this itself every ``RATE_PRUNE_EVERY_S``."""
        with self._lock:
            return self._delete_expired(self.clock() if now is None else now)

    def _delete_expired(self, now: float) -> int:
        self._next_prune = time.monotonic() + RATE_PRUNE_EVERY_S
        second = math.floor(now)
        cur = self._conn.execute("DELETE FROM hits WHERE second <= ? OR second > ?",
                                 (second - self.window, second + self.window))
        return cur.rowcount

    def rows(self) -> int:
        """How many (key, second) buckets the table holds."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM hits").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class RateCounter:
    """``limit`` requests per minute per key: shared through ``state_dir`` when given (and
    usable), else, or while the shared database is unusable, counted by this process alone."""

    def __init__(self, limit: int, state_dir: Path | None = None) -> None:
        self.limit = limit
        self.local = SlidingWindowLimiter(limit, 60.0)
        self.shared: SharedWindowLimiter | None = None
        if state_dir is not None:
            try:
                self.shared = SharedWindowLimiter(state_dir, limit, 60)
            except (sqlite3.Error, OSError) as exc:
                log.error("rate limit counted per process: cannot open %s: %s",
                          state_dir / RATE_DB_NAME, exc)
        self._warned_at = -math.inf

    async def hit(self, key: str) -> float:
        """Record a request; 0 when allowed, else the seconds until one would be."""
        if self.shared is None:
            return self.local.hit(key)
        delay = 0.0002
        waited = 0.0
        while True:
            try:
                return self.shared.hit(key)
            except sqlite3.Error as exc:
                if not _busy(exc) or waited >= _RATE_LOCK_WAIT_S:
                    self._degraded(exc)
                    return self.local.hit(key)
            # Another process holds the write lock for a few microseconds: yield the event loop
            # rather than sleep in SQLite's busy handler (which would stall every connection).
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.005)

    def _degraded(self, exc: sqlite3.Error) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _RATE_WARN_EVERY_S:
            self._warned_at = now
            log.warning("rate limit counted by process %d alone for now: shared database: %s",
                        os.getpid(), exc)
