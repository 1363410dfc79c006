"""The process-wide progress board: cells done per run, read by the flow and the CLI bar, and
each run's stop flag, raised by the flow and read by its shards."""

from __future__ import annotations

import threading
from collections.abc import Callable

ProgressListener = Callable[[str, int, int], None]


class RunProgress:
    """Cells done per run in this process, for the flow's progress artifact and the CLI bar.

    Shard tasks run in threads of the flow's process (Prefect's default task runner), so one
    process-wide board sees them all; a run spread over child runs moves it from its children's
    progress artifacts instead (``flows/spread.py``). Listeners get ``(run_id, done, total)``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, list[int]] = {}
        self._stopping: set[str] = set()
        self._listeners: list[ProgressListener] = []

    def start(self, run_id: str, total: int) -> None:
        with self._lock:
            self._runs[run_id] = [0, total]
            self._stopping.discard(run_id)
        self._notify(run_id, 0, total)

    def advance(self, run_id: str, n: int = 1) -> None:
        with self._lock:
            state = self._runs.get(run_id)
            if state is None:
                return
            state[0] += n
            done, total = state
        self._notify(run_id, done, total)

    def forget(self, run_id: str) -> None:
        """Drop a finished run (a long-lived worker runs many)."""
        with self._lock:
            self._runs.pop(run_id, None)
            self._stopping.discard(run_id)

    def request_stop(self, run_id: str) -> None:
        """Tell the shards of ``run_id`` in this process to stop calling and wind down.

        Raised when the run is cancelled or interrupted, or loses its run-id lease: shards run
        in threads, which no signal reaches, so they look at this flag instead.
        """
        with self._lock:
            self._stopping.add(run_id)

    def stop_requested(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._stopping

    def get(self, run_id: str) -> tuple[int, int]:
        with self._lock:
            done, total = self._runs.get(run_id, (0, 0))
            return done, total

    def subscribe(self, listener: ProgressListener) -> Callable[[], None]:
        """Add a listener; returns the function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, run_id: str, done: int, total: int) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(run_id, done, total)


PROGRESS = RunProgress()
