"""The CLI's tables (run summary, verdicts, suites), drawn with rich: one row per line, numbers
rounded for a reader, ``-`` for a value nobody knows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

# Headers a person reads; a column not listed here shows its key with spaces.
HEADERS = {
    "model_id": "model",
    "input_tokens": "tokens in",
    "output_tokens": "tokens out",
    "cost_usd": "cost $",
    "latency_p50_ms": "p50 ms",
    "latency_p95_ms": "p95 ms",
}
# Printed to a pipe or a file, a table is read by scripts (grep, awk): one line per row there,
# however narrow the default width of a non-terminal console (80) would be.
PIPE_WIDTH = 240


def stdout_console() -> Console:
    """A console on the current ``sys.stdout``: a terminal's width, or wide in a pipe."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=PIPE_WIDTH)
    return console


def format_value(column: str, value: Any) -> str:
    """A cell: milliseconds whole, money to the cent (or 4 decimals below a dollar), rates to 3."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if column.endswith("_ms"):
        return f"{value:.0f}"
    if column.startswith("cost"):
        if value == 0:  # the offline models and free endpoints
            return "0"
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"


def _is_numeric(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    values = [r.get(column) for r in rows if r.get(column) is not None]
    return bool(values) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )


def print_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str | None = None
) -> None:
    """Print ``rows`` as a table of ``columns``, numbers right-aligned."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title=title, title_justify="left")
    for column in columns:
        table.add_column(
            HEADERS.get(column, column.replace("_", " ")),
            justify="right" if _is_numeric(rows, column) else "left",
        )
    for row in rows:
        table.add_row(*(format_value(c, row.get(c)) for c in columns))
    stdout_console().print(table)


def _first_reason(reasons: list[str], width: int = 72) -> str:
    if not reasons:
        return ""
    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
    text = reasons[0]
    if len(text) + len(more) > width:
        text = text[: width - len(more) - 1].rstrip() + "…"
    return text + more


def print_verdicts(store: Any) -> None:
    """The night's answer to "did my model change?", one line per model."""
    from tasks.storage.layout import latest_key
    from tasks.summaries.payloads import MODELS, ModelsPayload, parse_summary

    key = latest_key(MODELS)
    try:
        data = store.get(key)
    except KeyError:
        return
    # A file that does not match the model stops with its name and the bad field (a
    # PlumblineError, which main() prints), never with a KeyError from deep in this table.
    payload = parse_summary(ModelsPayload, data, str(store.local_path(key) or key))
    window = payload.window
    rows = [
        {"model": m.model_id, "verdict": m.verdict, "pass_now": m.pass_rate_recent,
         "pass_before": m.pass_rate_baseline, "why": _first_reason(m.reasons)}
        for m in payload.models
    ]
    print(f"Verdicts (last {window.recent_days} days vs the {window.baseline_days} before, "
          f"as of {window.as_of}):")
    print_table(rows, ["model", "verdict", "pass_now", "pass_before", "why"])
