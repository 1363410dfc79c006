"""``plumbline submit``: post a run's results to a Plumbline API (the client is submit_client)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

MAX_ERRORS_SHOWN = 20


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
) -> int:
    """Post a run's results to a Plumbline API.

    Post results to a Plumbline API's /api/submit in the Pramana payload, one result per
    request; waits out HTTP 429 as Retry-After says and retries server errors. RESULTS is a run
    id in the local store or a .parquet/.jsonl file of records (or of Pramana payloads). Exit 1
    if any result failed.
    """
    from flows.cli.submit_client import SubmitReport, load_results
    from flows.cli.submit_client import submit as post_results
    from tasks.settings import Settings
    from tasks.storage import open_store

    path = Path(results)
    store = None if path.is_file() else open_store(Settings())
    rows = load_results(results, store)
    print(f"Submitting {len(rows)} row(s) from {results} to {api_url} ...", flush=True)

    def progress(r: SubmitReport) -> None:
        if r.total % 100 == 0:
            print(f"  {r.total}: {r.accepted} accepted, {r.duplicate} duplicate, "
                  f"{r.failed} failed", flush=True)

    token = token or os.environ.get("PLUMBLINE_API_TOKEN") or None
    report = post_results(rows, api_url, token=token, on_progress=progress)
    for err in report.errors[:MAX_ERRORS_SHOWN]:
        print(f"  failed: {err}", file=sys.stderr)
    if len(report.errors) > MAX_ERRORS_SHOWN:
        print(f"  ... and {len(report.errors) - MAX_ERRORS_SHOWN} more failures",
              file=sys.stderr)
    print(f"accepted {report.accepted}, duplicate {report.duplicate}, failed {report.failed}, "
          f"skipped {report.skipped} (failed calls: nothing to submit)")
    return 1 if report.failed else 0
