"""What ``plumbline submit`` sends: results read from a run id, a Parquet or a JSONL file, and
each turned into the Pramana submit payload (``to_payload``).

A run id is looked up through the run state the runner keeps (its manifest and day markers); a
JSONL line that already is a Pramana payload (e.g. from the Pramana CLI) is passed through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq

from tasks import __version__
from tasks.errors import ConfigError, SubmitError
from tasks.records.schema import conform, output_hash
from tasks.run.state import read_manifest, read_run_rows, run_days
from tasks.storage.base import ObjectStore

RUNNER_VERSION = f"plumbline/{__version__}"
# Pramana's payload fields; a JSONL line with all of these is sent as it is.
PAYLOAD_FIELDS = ("model_id", "prompt_id", "output", "score", "assertion_result", "latency_ms",
                  "result_hash", "suite_hash", "suite_version", "temperature", "seed",
                  "runner_version", "timestamp")
# Plumbline extras the API accepts that are part of its dedupe identity: sent with a record, and
# kept when a payload file has them, so samples of one run with the same output (and the same
# timestamp, when the run is pinned with as_of) are stored as the separate results they are.
IDENTITY_FIELDS = ("run_id", "sample_idx")


class Skips(Protocol):
    """Where ``payloads`` counts the rows it leaves out (a ``SubmitReport``)."""

    skipped: int


# --- reading results --------------------------------------------------------------------------

def _records_from_table(table: Any) -> list[dict[str, Any]]:
    return conform(table).to_pylist()


def records_for_run(store: ObjectStore, run_id: str) -> list[dict[str, Any]]:
    """Every stored row of ``run_id``, found through the state the runner keeps for it.

    The run's manifest names its user partition and its day markers the days it wrote to; each
    day is read with ``read_live``, so a compaction running meanwhile neither hides nor doubles
    a row.
    """
    try:
        manifest = read_manifest(store, run_id)
    except ConfigError as exc:  # not a run id the runner accepts, so no run has it
        raise SubmitError(f"no rows of run {run_id!r}: {exc}") from exc
    if manifest is None:
        raise SubmitError(
            f"no rows of run {run_id!r} in {store.describe()}: no run of that id started "
            "there (it has no run state); submit a .parquet or .jsonl file of its rows instead"
        )
    user_id = manifest.get("user_id")
    if not isinstance(user_id, str):
        raise SubmitError(f"run {run_id!r}: its manifest names no user_id")
    rows = read_run_rows(store, run_id, user_id, run_days(store, run_id)).to_pylist()
    if not rows:
        raise SubmitError(f"no rows of run {run_id!r} in {store.describe()}")
    return rows


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SubmitError(f"{path}:{lineno}: not JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise SubmitError(f"{path}:{lineno}: expected a JSON object per line")
            row["_line"] = lineno
            rows.append(row)
    return rows


def load_results(source: str, store: ObjectStore | None = None) -> list[dict[str, Any]]:
    """Rows to submit: from a ``.parquet``/``.jsonl`` file if ``source`` is one, else a run id."""
    path = Path(source)
    if path.is_file():
        if path.suffix == ".parquet":
            try:
                return _records_from_table(pq.read_table(path))
            except (OSError, ValueError) as exc:
                raise SubmitError(f"{path}: cannot read as Plumbline records: {exc}") from exc
        if path.suffix in (".jsonl", ".ndjson"):
            return _read_jsonl(path)
        raise SubmitError(f"{path}: expected a .parquet or .jsonl file")
    if path.suffix in (".parquet", ".jsonl", ".ndjson") or "/" in source:
        raise SubmitError(f"{source}: no such file")
    if store is None:
        raise SubmitError(f"{source!r} is not a file, and no store to look the run id up in")
    return records_for_run(store, source)


# --- the payload --------------------------------------------------------------------------------

def _iso(ts: Any) -> str:
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return str(ts)


def to_payload(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """One record as the Pramana payload, or None for a failed call (nothing to compare).

    A row that already is a payload (it has ``result_hash`` and ``assertion_result``) is passed
    through with only the payload's fields (and ``IDENTITY_FIELDS``); a record adds those too.
    """
    where = f"line {row['_line']}: " if "_line" in row else ""
    if "assertion_result" in row and "result_hash" in row:
        missing = [f for f in ("model_id", "prompt_id", "output") if row.get(f) is None]
        if missing:
            raise SubmitError(f"{where}payload lacks {', '.join(missing)}")
        return {k: row[k] for k in (*PAYLOAD_FIELDS, *IDENTITY_FIELDS) if k in row}
    missing = [f for f in ("model_id", "prompt_id", "timestamp") if row.get(f) is None]
    if missing:
        raise SubmitError(f"{where}record lacks {', '.join(missing)}")
    if row.get("error") or row.get("output") is None:
        return None
    details: dict[str, Any] = {}
    if row.get("assertion_type"):
        details["type"] = row["assertion_type"]
    if row.get("score_reason"):
        details["reason"] = row["score_reason"]
    return {
        "model_id": row["model_id"],
        "prompt_id": row["prompt_id"],
        "output": row["output"],
        "score": row.get("score"),
        "assertion_result": {"passed": row.get("passed"), "details": details},
        "latency_ms": row.get("latency_ms"),
        # Recomputed, not copied: the receiver checks it against the three fields it covers.
        "result_hash": output_hash(row["model_id"], row["prompt_id"], row["output"]),
        "suite_hash": row.get("suite_hash"),
        "suite_version": row.get("suite_version"),
        "temperature": row.get("temperature"),
        "seed": row.get("seed"),
        "runner_version": RUNNER_VERSION,
        "timestamp": _iso(row["timestamp"]),
        "run_id": row.get("run_id"),
        "sample_idx": row.get("sample_idx") or 0,
    }


def payloads(rows: Iterable[Mapping[str, Any]], report: Skips) -> Iterator[dict[str, Any]]:
    """Each row's payload; a failed call (no output) is counted in ``report.skipped``."""
    for row in rows:
        payload = to_payload(row)
        if payload is None:
            report.skipped += 1
        else:
            yield payload
