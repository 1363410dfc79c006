"""The spool's background flusher: moves acknowledged submissions from the spool to the store.

Runs in a thread of the API process; a failing store is retried with backoff while the rows wait
safely in the spool (``api/spool.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from api.spool import Spool
from tasks.storage.base import ObjectStore

log = logging.getLogger("api.spool")


class SpoolFlusher:
    """Moves spooled rows to the store when there are ``flush_rows`` of them or the oldest is
    ``flush_seconds`` old, at start (replaying what a previous process left) and at stop.

    A failing store is retried with backoff (up to a minute); the rows wait in the spool.
    """

    def __init__(
        self, spool: Spool, store: ObjectStore, *, flush_rows: int = 5000,
        flush_seconds: float = 30.0, max_backoff: float = 60.0,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.spool = spool
        self.store = store
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_backoff = max_backoff
        self.last_error: str | None = None
        # Told of every failed flush (the API counts them for /metrics).
        self.on_failure = on_failure
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._since_check = 0
        spool.on_append(self._appended)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spool-flusher", daemon=True)
        self._thread.start()

    def _appended(self) -> None:
        # Counting group commits, not rows, keeps this O(1); the loop checks the real count.
        self._since_check += 1
        if self._since_check >= 64:
            self._since_check = 0
            self._wake.set()

    def _due(self) -> bool:
        try:
            pending = self.spool.pending_count()
            age = self.spool.oldest_pending_age()
        except Exception as exc:  # a broken spool must not kill the thread; health reports it
            log.warning("spool flusher cannot read the spool: %s", exc)
            return False
        if pending == 0:
            # Nothing waits (a GDPR delete may have dropped what a failed flush left): an old
            # flush error no longer describes anything, and no flush would ever clear it.
            self.last_error = None
            return False
        return pending >= self.flush_rows or (age is not None and age >= self.flush_seconds)

    def _has_pending(self) -> bool:
        try:
            return self.spool.pending_count() > 0
        except Exception:
            return False

    def _run(self) -> None:
        backoff = 0.0
        retry_at = 0.0
        due = self._has_pending()  # replay whatever a previous process left
        while not self._stop.is_set():
            if due and time.monotonic() >= retry_at:
                try:
                    self.spool.flush(self.store, batch_rows=self.flush_rows)
                    self.last_error = None
                    backoff = 0.0
                except Exception as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._failed()
                    backoff = min(self.max_backoff, max(1.0, backoff * 2))
                    retry_at = time.monotonic() + backoff
                    log.warning("spool flush failed (retrying in %.0f s): %s",
                                backoff, self.last_error)
            self._wake.wait(min(self.flush_seconds, 1.0))
            self._wake.clear()
            due = not self._stop.is_set() and self._due()

    def stop(self, *, final_flush: bool = True) -> None:
        """Stop the loop and try one last flush; whatever fails stays spooled for next time."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if final_flush:
            try:
                self.spool.flush(self.store, batch_rows=self.flush_rows)
            except Exception as exc:
                self._failed()
                log.warning("final spool flush failed; pending rows stay spooled: %s", exc)

    def _failed(self) -> None:
        if self.on_failure is not None:
            try:
                self.on_failure()
            except Exception:  # counting must never stop the flusher
                log.exception("spool flush failure hook failed")

