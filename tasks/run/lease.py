"""One flow run per run id: a lease in the store, taken before the run reads its state or calls
anything.

Two runs of one run id at once each plan from the same state and call every cell, so every row is
written twice (issue 16, item 4: a user retrying after a Prefect API 503 gets exactly that). The
lease is one object, ``state/runs/<run_id>/lease.json``, holding a random token, who holds it and
until when. The holder renews it while it works and deletes it at the end. A second run that
finds a live lease **fails at once** with ``RunBusy`` naming the run id and the holder; it does
not wait, because a duplicate started by mistake should say so rather than queue for hours
behind the first (and, once the first is done, re-running the same run id resumes it).

Object stores (B2, a folder) have no compare-and-swap, so the lease is taken by write, wait,
read back: read the lease (a live one held by someone else: busy); write ours; wait
``SETTLE_S``; read it again. Whoever wrote last holds it and every other contender reads a
foreign token and fails. What this guarantees:

- A run that starts while another holds the lease (any time after the holder's write landed)
  always fails: the check reads the holder's lease.
- Contenders starting together: exactly one proceeds, provided each one's read-then-write takes
  less than the settle time: ``SETTLE_S`` on B2 (an upload takes well under a second),
  ``LOCAL_SETTLE_S`` on a local folder (a write takes milliseconds there; a folder shared over
  the network is not a supported store for concurrent runs).
- If a write took longer than that (a B2 upload stuck in retries), two runs may both proceed;
  the next renewal (``RENEW_EVERY_S``) finds the other's token and stops the run that lost,
  so the overlap is bounded by one renewal period. Rows written twice in that window are
  counted once: the nightly aggregation keeps one row per (run, model, prompt, sample).
- A holder that died (SIGKILL, power loss) keeps the run id for at most ``TTL_S``; after that
  the lease is expired and the next run takes it over. Expiry is compared on wall clocks, so
  machines sharing a store need clocks within a fraction of ``TTL_S`` of each other (NTP).

A run spread over child runs (``flows/spread.py``) is still one holder: the parent takes and
renews the lease; each child is handed its token and only reads it (``FollowedLease``), working
while the parent holds it and stopping within one check once it does not.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from tasks.errors import RunBusy, StorageError
from tasks.storage.base import ObjectStore
from tasks.storage.layout import run_lease_key

# A lease not renewed for this long belongs to a dead run and may be taken over.
TTL_S = 120.0
# The holder renews well inside the TTL: three renewals may fail (a store hiccup) before it lapses.
RENEW_EVERY_S = 30.0
# Longer than one lease write takes: see the module docstring. A local folder's writes take
# milliseconds: waiting 2 s there cost every run with a given run id (each day of `plumbline demo`)
# two seconds for nothing.
SETTLE_S = 2.0
LOCAL_SETTLE_S = 0.25
# Attempts to take a lease that vanished under us (a previous holder deleting its own).
_ATTEMPTS = 3

logger = logging.getLogger("plumbline.lease")


def default_holder() -> str:
    """This process, as a person finds it: host and pid."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


@dataclass(frozen=True)
class LeaseInfo:
    """A lease as stored."""

    token: str
    holder: str
    acquired: datetime
    expires: datetime

    def to_bytes(self) -> bytes:
        return json.dumps({"token": self.token, "holder": self.holder,
                           "acquired": self.acquired.isoformat(),
                           "expires": self.expires.isoformat()}, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseInfo | None:
        """The lease in ``data``, or None when it is not one (then it protects nothing)."""
        try:
            raw = json.loads(data)
            info = cls(token=str(raw["token"]), holder=str(raw["holder"]),
                       acquired=datetime.fromisoformat(raw["acquired"]),
                       expires=datetime.fromisoformat(raw["expires"]))
        except (ValueError, KeyError, TypeError):
            return None
        if info.expires.tzinfo is None or info.acquired.tzinfo is None:
            return None
        return info


def read_lease(store: ObjectStore, run_id: str) -> LeaseInfo | None:
    """The lease on ``run_id`` (live or expired), or None if there is none."""
    try:
        data = store.get(run_lease_key(run_id))
    except KeyError:
        return None
    return LeaseInfo.from_bytes(data)


def settle_time(store: ObjectStore) -> float:
    """How long a contender waits between writing the lease and reading it back on ``store``:
    ``LOCAL_SETTLE_S`` on a local folder, ``SETTLE_S`` elsewhere."""
    return LOCAL_SETTLE_S if store.local_path(run_lease_key("settle")) is not None else SETTLE_S


class _Watched:
    """What a lease's holder and a follower share: the lost flag, why, and who to tell."""

    def __init__(self, run_id: str, on_lost: Callable[[], None] | None) -> None:
        self.run_id = run_id
        self.on_lost = on_lost
        self.lost = threading.Event()
        self.lost_reason = ""

    def _lose(self, reason: str) -> None:
        self.lost_reason = reason
        self.lost.set()
        logger.error("run %s: %s", self.run_id, reason)
        if self.on_lost is not None:
            self.on_lost()


class RunLease(_Watched):
    """The lease on one run id, for one flow run: ``with RunLease(...) as lease:`` takes it
    (or raises ``RunBusy``), renews it in a background thread, and releases it on exit.

    ``on_lost`` is called (from the renewal thread) if another run took the lease over or it
    could not be renewed before it expired; ``check()`` then raises ``RunBusy``.
    """

    def __init__(
        self,
        store: ObjectStore,
        run_id: str,
        holder: str | None = None,
        *,
        ttl: float = TTL_S,
        renew_every: float = RENEW_EVERY_S,
        settle: float | None = None,
        on_lost: Callable[[], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(run_id, on_lost)
        self.store = store
        self.key = run_lease_key(run_id)
        self.holder = holder or default_holder()
        self.ttl = ttl
        self.renew_every = renew_every
        self.settle = settle if settle is not None else settle_time(store)
        self.token = uuid.uuid4().hex
        self._now = now
        self._sleep = sleep
        self._expires: datetime | None = None
        self._acquired: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- taking and giving back -------------------------------------------------------------

    def acquire(self, *, fresh: bool = False) -> None:
        """Take the lease or raise ``RunBusy`` naming who holds it.

        ``fresh``: the run id was generated just now, so nobody else can be contending for it;
        the lease is written (for later contenders to see) without the settle-and-read-back.
        """
        for _ in range(_ATTEMPTS):
            current = read_lease(self.store, self.run_id)
            if current is not None and current.token != self.token \
                    and current.expires > self._now():
                raise self._busy(current)
            self._write()
            if fresh:
                return
            self._sleep(self.settle)
            current = read_lease(self.store, self.run_id)
            if current is None:
                continue  # a previous holder's release deleted ours: write it again
            if current.token != self.token:
                raise self._busy(current)
            return
        raise RunBusy(f"run {self.run_id!r}: could not take its lease ({self.key}): it kept "
                      "vanishing while being written; try again", run_id=self.run_id)

    def release(self) -> None:
        """Delete the lease if it is still ours (never someone else's)."""
        self._stop_renewing()
        try:
            current = read_lease(self.store, self.run_id)
            if current is not None and current.token == self.token:
                self.store.delete(self.key)
        except StorageError as exc:
            # The run's result stands; the lease simply expires after TTL_S.
            logger.warning("run %s: could not release its lease: %s", self.run_id, exc)

    def check(self) -> None:
        """Raise ``RunBusy`` if the lease was lost (taken over, or not renewed in time)."""
        if self.lost.is_set():
            raise RunBusy(f"run {self.run_id!r} stopped: {self.lost_reason}",
                          run_id=self.run_id)

    # --- renewing ---------------------------------------------------------------------------

    def renew(self) -> None:
        """One renewal: read the lease back, and push its expiry on if it is still ours."""
        if self.lost.is_set():
            return
        try:
            current = read_lease(self.store, self.run_id)
            if current is None or current.token != self.token:
                who = "nobody (it was deleted)" if current is None else current.holder
                self._lose(f"its lease was taken over by {who}; that run now owns the run id")
                return
            self._write()
        except StorageError as exc:
            if self._expires is not None and self._now() >= self._expires:
                self._lose(f"its lease could not be renewed before it expired ({exc})")
            else:
                logger.warning("run %s: lease renewal failed, will retry: %s", self.run_id, exc)

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                        name=f"lease-{self.run_id}")
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every):
            self.renew()

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    # --- internals --------------------------------------------------------------------------

    def _write(self) -> None:
        now = self._now()
        acquired = self._acquired or now
        expires = now + timedelta(seconds=self.ttl)
        self.store.put(self.key, LeaseInfo(self.token, self.holder, acquired,
                                           expires).to_bytes())
        # Only a write that landed extends what this run may rely on.
        self._acquired, self._expires = acquired, expires


    def _busy(self, current: LeaseInfo) -> RunBusy:
        return RunBusy(
            f"run {self.run_id!r} is already running: held by {current.holder} since "
            f"{current.acquired:%Y-%m-%d %H:%M:%S} UTC (lease {self.key}, renewed until "
            f"{current.expires:%H:%M:%S} UTC). Wait for it to finish and run the same id again "
            "to resume it, or start a new run id; a holder that died frees the run id when its "
            "lease expires.",
            run_id=self.run_id, holder=current.holder,
        )

    def __enter__(self) -> RunLease:
        self.acquire()
        self.start_renewing()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class FollowedLease(_Watched):
    """A part of a spread run working under its parent's lease (``flows/spread.py``).

    The parent flow run holds the run id's lease and keeps renewing it while its child runs
    work; each child knows the lease's token and never writes the lease. It checks at start that
    the lease is live and still carries that token (else ``RunBusy``: the parent is gone or
    another run took the run id over), and again every ``check_every`` seconds: once the token
    changes or the lease lapses, ``on_lost`` stops the child's shards, as a lost lease stops a
    parent's. A child therefore never works beside another run of its run id for longer than
    one check period, and never outlives a dead parent by more than the lease's TTL.

    Same interface as ``RunLease`` where the flow uses it: ``renew``, ``check``, ``release``.
    """

    def __init__(self, store: ObjectStore, run_id: str, token: str, *,
                 check_every: float = RENEW_EVERY_S, on_lost: Callable[[], None] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(run_id, on_lost)
        self.store = store
        self.token = token
        self.check_every = check_every
        self._now = now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self) -> None:
        """Check the parent's lease now (``RunBusy`` if it is not live with our token), then
        keep checking it in a background thread."""
        self.renew()
        self.check()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"lease-follow-{self.run_id}")
        self._thread.start()

    def renew(self) -> None:
        """One look at the parent's lease (a child never writes it)."""
        if self.lost.is_set():
            return
        try:
            current = read_lease(self.store, self.run_id)
        except StorageError as exc:
            logger.warning("run %s: could not read its parent's lease, will retry: %s",
                           self.run_id, exc)
            return
        if current is None:
            self._lose("its parent's lease is gone (the parent run ended or was stopped)")
        elif current.token != self.token:
            self._lose(f"its parent no longer holds the run id: {current.holder} does")
        elif current.expires <= self._now():
            self._lose(f"its parent's lease expired at {current.expires:%H:%M:%S} UTC "
                       f"(held by {current.holder}, who stopped renewing it)")

    def check(self) -> None:
        if self.lost.is_set():
            raise RunBusy(f"run {self.run_id!r} part stopped: {self.lost_reason}",
                          run_id=self.run_id)

    def release(self) -> None:
        """Stop following; the lease stays the parent's."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.check_every):
            self.renew()
