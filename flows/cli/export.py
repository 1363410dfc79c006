"""``plumbline export``: the published summaries, a model's history, the drift tests or a user's
own raw rows, as CSV, JSON or Parquet files (the same tables as ``GET /api/export/{dataset}``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from cyclopts import Parameter


def export(
    dataset: Annotated[
        Literal["models", "drift", "history", "rows"],
        Parameter(help="models: one row per model (models.json); drift: one row per drift test "
                       "(drift.json); history: one row per day of --model; rows: the raw rows "
                       "of --user (Parquet only)."),
    ],
    *,
    fmt: Annotated[Literal["csv", "json", "parquet"] | None, Parameter(
        name=["--format", "-f"],
        help="File format (default: from --output's suffix, else csv; parquet for rows).")] = None,
    model: Annotated[str | None, Parameter(help="The model id, for history.")] = None,
    user: Annotated[str | None, Parameter(
        help="The user id (16 hex digits, 'anonymous' or 'scheduler'), for rows.")] = None,
    output: Annotated[Path | None, Parameter(
        name=["--output", "-o"],
        help="Write to this file (default: standard output; Parquet needs a file or a pipe).")
    ] = None,
    data_dir: Annotated[Path | None, Parameter(
        help="Read this local data folder instead of the configured store.")] = None,
) -> int:
    """Export summaries, a model's history, the drift tests or a user's raw rows.

    Write one dataset as CSV, JSON or Parquet, read from what the nightly flow published (or,
    for rows, from the user's own raw partitions): nested fields become dotted columns, lists
    JSON text, and every format holds the same rows.
    """
    from tasks.errors import PlumblineError
    from tasks.settings import Settings
    from tasks.storage import open_store
    from tasks.storage.local import LocalStore
    from tasks.summaries.export import export_from_store, export_user_rows

    if fmt is None and output is not None and output.suffix.lstrip(".") in ("csv", "json",
                                                                             "parquet"):
        fmt = output.suffix.lstrip(".")  # type: ignore[assignment]
    store = LocalStore(data_dir) if data_dir is not None else open_store(Settings())
    if dataset == "rows":
        if not user:
            raise PlumblineError("the rows export needs --user (whose rows to export)")
        if fmt not in (None, "parquet"):
            raise PlumblineError("the rows export is Parquet only (the raw record schema)")
        made = export_user_rows(store, user)
    else:
        if user:
            raise PlumblineError("--user applies to the rows export only")
        if model and dataset != "history":
            raise PlumblineError(f"--model applies to the history export only, not {dataset}")
        made = export_from_store(store, dataset, fmt or "csv", model)
    if output is None:
        if made.media_type.endswith("parquet") and sys.stdout.isatty():
            raise PlumblineError("Parquet is binary: give --output FILE (or pipe the output)")
        sys.stdout.buffer.write(made.body)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(made.body)
    where = str(output) if output is not None else "standard output"
    print(f"exported {made.rows} row(s) of {dataset} to {where}", file=sys.stderr)
    return 0
