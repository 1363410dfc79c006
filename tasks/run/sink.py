"""Writes a shard's records to storage in batches while the shard works.

A killed run loses at most the last few seconds of answers; the rows it wrote are found again
through the run's day markers (``tasks.run.state``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import date
from typing import Any

from tasks.run.plan import RunConfig
from tasks.run.state import mark_day
from tasks.storage.base import ObjectStore

# A shard writes its rows in batches: whichever comes first. Small enough that a kill loses
# little, large enough that a day's raw partition is not thousands of tiny files (the nightly
# compaction merges them anyway).
FLUSH_ROWS = 250
FLUSH_SECONDS = 15.0


class RecordSink:
    """Writes a shard's records to storage in batches while the shard runs.

    Before rows land in a day partition the run's marker for that day is written, so a resume
    always knows where to look. Writes run in a thread (storage is blocking I/O) one at a time;
    a failed batch is retried on close, and if it fails again the error is raised (its cells
    have no row and a resume will do them again).
    """

    def __init__(self, store: ObjectStore, config: RunConfig, *, flush_rows: int = FLUSH_ROWS,
                 flush_seconds: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.config = config
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.written = 0
        self._buffer: list[dict[str, Any]] = []
        self._failed: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._marked: set[date] = set()
        self._pending: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    def add(self, record: dict[str, Any]) -> None:
        self._buffer.append(record)
        if (len(self._buffer) >= self.flush_rows
                or time.monotonic() - self._last_flush >= self.flush_seconds):
            batch, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
            task = asyncio.get_running_loop().create_task(self._write(batch))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        async with self._lock:
            try:
                await asyncio.to_thread(self._write_sync, batch)
            except Exception:
                self._failed.extend(batch)

    def _write_sync(self, batch: list[dict[str, Any]]) -> None:
        # Imported by the first write (pyarrow, ~0.1 s), not before a run's first call.
        from tasks.records.io import write_records

        for day in {r["timestamp"].date() for r in batch} - self._marked:
            mark_day(self.store, self.config.run_id, day)
            self._marked.add(day)
        write_records(self.store, batch, user_id=self.config.user_id, source=self.config.source)
        self.written += len(batch)

    async def aclose(self) -> None:
        """Write everything still buffered (also when the shard is being cancelled)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        batch, self._buffer, self._failed = self._failed + self._buffer, [], []
        if batch:
            async with self._lock:
                await asyncio.to_thread(self._write_sync, batch)
