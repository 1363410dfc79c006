"""``plumbline submit``: post a run's results to a Plumbline API in batches, resuming an
interrupted upload, with a progress bar on a terminal (the client is submit_client)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

if TYPE_CHECKING:
    from flows.cli.submit_client import SubmitReport

MAX_ERRORS_SHOWN = 20
# In a pipe or a log, a line each time at least this many more results are done (one per batch
# of 500, one per 100 results one by one).
LINE_EVERY = 100


def _counts(r: SubmitReport) -> str:
    return f"{r.accepted} accepted, {r.duplicate} duplicate, {r.failed} failed"


class ProgressLines:
    """Progress as plain lines on stdout, for a pipe or a log file (no bar to redraw there)."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self, r: SubmitReport) -> None:
        if r.done - self.last >= LINE_EVERY or (r.done == r.total and r.done > self.last):
            print(f"  {r.done}/{r.total}: {_counts(r)}", flush=True)
            self.last = r.done


@contextmanager
def progress_view() -> Iterator[Callable[[SubmitReport], None]]:
    """A rich bar on stderr when it is a terminal, else plain lines (``ProgressLines``)."""
    from rich.console import Console

    from flows.cli.progress import rich_bar

    console = Console(stderr=True)
    if not console.is_terminal:
        yield ProgressLines()
        return
    with rich_bar("submit", "{task.fields[counts]}", console=console) as bar:
        task = bar.add_task("submit", total=None, counts="")

        def update(r: SubmitReport) -> None:
            bar.update(task, total=r.total, completed=r.done, counts=_counts(r))

        yield update


def submit(
    results: Annotated[
        str,
        Parameter(name="RESULTS", help="A run id (looked up in the configured store) or a "
                  ".parquet/.jsonl file."),
    ],
    /,
    *,
    api_url: Annotated[
        str, Parameter(help="The API's base URL, e.g. https://plumbline.example.org.")
    ],
    token: Annotated[
        str | None,
        Parameter(help="A Bearer token (JWT) to submit as a signed-in user (default: "
                  "$PLUMBLINE_API_TOKEN, else anonymous)."),
    ] = None,
    batch_size: Annotated[
        int, Parameter(help="Results per request to /api/submit/batch (1-500; fewer when "
                       "500 would exceed 1 MiB).")
    ] = 500,
    one_by_one: Annotated[
        bool, Parameter(negative="", help="One result per request to /api/submit (the Pramana "
                        "CLI's way; slow at the API's 60 requests per minute).")
    ] = False,
    restart: Annotated[
        bool, Parameter(negative="", help="Forget the progress of an interrupted upload of "
                        "RESULTS to this API and send everything again.")
    ] = False,
) -> int:
    """Post a run's results to a Plumbline API.

    Post results to a Plumbline API's /api/submit/batch in the Pramana payload, up to 500 per
    request; waits out HTTP 429 as Retry-After says and retries server errors. An interrupted
    upload resumes: results the API acknowledged are kept in a progress file under
    $PLUMBLINE_DATA_DIR/submit/ and not sent again. RESULTS is a run id in the local store or a
    .parquet/.jsonl file of records (or of Pramana payloads). Exit 1 if any result failed.
    """
    from flows.cli.submit_client import MAX_BATCH_ITEMS
    from flows.cli.submit_client import submit as post_results
    from flows.cli.submit_resume import ProgressFile
    from flows.cli.submit_source import load_results
    from tasks.errors import SubmitError
    from tasks.settings import Settings
    from tasks.storage import open_store

    if not 1 <= batch_size <= MAX_BATCH_ITEMS:
        raise SubmitError(f"--batch-size must be 1-{MAX_BATCH_ITEMS}, got {batch_size}")
    settings = Settings()
    path = Path(results)
    if path.is_file():
        rows = load_results(results)
        source = f"file {path.resolve()}"
    else:
        store = open_store(settings)
        rows = load_results(results, store)
        source = f"run {results} in {store.describe()}"
    token = token or os.environ.get("PLUMBLINE_API_TOKEN") or None
    progress = ProgressFile.open(settings.data_dir / "submit", source=source, api_url=api_url,
                                 token=token, restart=restart)
    how = "one per request" if one_by_one else f"in batches of up to {batch_size}"
    print(f"Submitting {len(rows)} row(s) from {results} to {api_url} {how} ...", flush=True)
    if progress.resumed:
        print(f"  resuming: progress of an earlier run in {progress.path}", flush=True)
    try:
        with progress_view() as view:
            report = post_results(rows, api_url, token=token, on_progress=view,
                                  batch_size=batch_size, one_by_one=one_by_one,
                                  progress=progress)
    except BaseException as exc:
        progress.close()
        if isinstance(exc, KeyboardInterrupt):
            print(f"interrupted: run the same command again to resume ({progress.path})",
                  file=sys.stderr)
        raise
    if report.fell_back:
        print("  the API has no /api/submit/batch: sent one result per request", flush=True)
    for err in report.errors[:MAX_ERRORS_SHOWN]:
        print(f"  failed: {err}", file=sys.stderr)
    if len(report.errors) > MAX_ERRORS_SHOWN:
        print(f"  ... and {len(report.errors) - MAX_ERRORS_SHOWN} more failures",
              file=sys.stderr)
    print(f"accepted {report.accepted}, duplicate {report.duplicate}, failed {report.failed}, "
          f"skipped {report.skipped} (failed calls: nothing to submit), "
          f"{report.resumed} acknowledged earlier, in {report.requests} request(s)")
    if report.aborted:
        print(f"stopped: {report.aborted}", file=sys.stderr)
    if report.failed or report.aborted:
        progress.close()
        print(f"progress kept in {progress.path}: run the same command again to send only "
              "what is missing", file=sys.stderr)
        return 1
    progress.finish()
    return 0
