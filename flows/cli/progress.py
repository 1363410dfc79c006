"""The terminal progress bar of ``plumbline run``: one rich bar per run, fed by ``PROGRESS``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.run.progress import PROGRESS, RunProgress


def rich_bar(label: str, detail: str, *, console: Any) -> Any:
    """The CLI's one bar style: label, bar, done/total, a detail, elapsed and remaining time.

    ``label`` and ``detail`` are rich column templates (``{task.description}``,
    ``{task.fields[...]}``). rich is imported here, so ``plumbline --help`` does not pay for it.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(detail),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)


class TerminalProgress:
    """A progress bar per run on stderr (``plumbline run``), fed by ``PROGRESS``.

    Used as a context manager around the flow call; shards report from their threads and rich
    redraws at its own pace, so a cell costs one counter update, not a redraw.
    """

    def __init__(self, board: RunProgress = PROGRESS) -> None:
        self.board = board
        self._bars: dict[str, Any] = {}
        self._progress: Any = None
        self._unsubscribe: Callable[[], None] | None = None

    def __enter__(self) -> TerminalProgress:
        from rich.console import Console

        self._progress = rich_bar("{task.description}", "calls", console=Console(stderr=True))
        self._progress.start()
        self._unsubscribe = self.board.subscribe(self._update)
        return self

    def _update(self, run_id: str, done: int, total: int) -> None:
        bar = self._bars.get(run_id)
        if bar is None:
            bar = self._bars[run_id] = self._progress.add_task(f"run {run_id}", total=total)
        self._progress.update(bar, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._progress.stop()
