"""``plumbline submit``: post a run's results to a Plumbline API in the Pramana submit payload.

Results come from a run id in the local store, or from a Parquet or JSONL file of records (or of
payloads already in the Pramana shape, e.g. from the Pramana CLI). Each result is one
``POST /api/submit``, the endpoint the Pramana CLI uses; an HTTP 429 waits as long as the
server's ``Retry-After`` says, a 5xx or a network error backs off, and every result ends as
accepted, duplicate or failed: nothing is dropped without being counted.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from tasks import __version__
from tasks.errors import ConfigError, SubmitError
from tasks.records.schema import conform, output_hash
from tasks.retry import RetryPolicy, parse_retry_after
from tasks.run.state import read_manifest, read_run_rows, run_days
from tasks.storage.base import ObjectStore

SUBMIT_PATH = "/api/submit"
RUNNER_VERSION = f"plumbline/{__version__}"
# Doubling from 1 s without jitter (one client, nobody to spread from); a 429's Retry-After is
# waited in full up to 5 minutes, the API's own rate-limit window being one minute.
SUBMIT_RETRY = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=3600.0, jitter=False,
                           max_retry_after=300.0)
# Pramana's payload fields; a JSONL line with all of these is sent as it is.
PAYLOAD_FIELDS = ("model_id", "prompt_id", "output", "score", "assertion_result", "latency_ms",
                  "result_hash", "suite_hash", "suite_version", "temperature", "seed",
                  "runner_version", "timestamp")



@dataclass
class SubmitReport:
    """What happened to each result: the counts a user checks, and why any failed."""

    accepted: int = 0
    duplicate: int = 0
    failed: int = 0
    skipped: int = 0  # rows that are failed calls (an error, no output): nothing to submit
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.accepted + self.duplicate + self.failed


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
    through with only the payload's fields.
    """
    where = f"line {row['_line']}: " if "_line" in row else ""
    if "assertion_result" in row and "result_hash" in row:
        missing = [f for f in ("model_id", "prompt_id", "output") if row.get(f) is None]
        if missing:
            raise SubmitError(f"{where}payload lacks {', '.join(missing)}")
        return {k: row[k] for k in PAYLOAD_FIELDS if k in row}
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
    }


def payloads(rows: Iterable[Mapping[str, Any]], report: SubmitReport) -> Iterator[dict[str, Any]]:
    for row in rows:
        payload = to_payload(row)
        if payload is None:
            report.skipped += 1
        else:
            yield payload


# --- posting ------------------------------------------------------------------------------------

def _is_duplicate(resp: httpx.Response) -> bool:
    if resp.status_code == 409:
        return True
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and (
        body.get("status") == "duplicate" or body.get("duplicate") is True
    )


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict) and "detail" in body:
        return json.dumps(body["detail"])[:300]
    return json.dumps(body)[:300]


@dataclass
class Submitter:
    """Posts payloads one by one with retries; the client and the sleep are injectable."""

    client: httpx.Client
    api_url: str
    token: str | None = None
    retry: RetryPolicy = SUBMIT_RETRY
    sleep: Callable[[float], None] = time.sleep

    def post(self, payload: Mapping[str, Any], report: SubmitReport) -> None:
        url = self.api_url.rstrip("/") + SUBMIT_PATH
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        label = f"{payload.get('model_id')} {payload.get('prompt_id')}"
        problem = ""
        attempts = self.retry.max_attempts
        for attempt in range(1, attempts + 1):
            retry_after = None
            try:
                resp = self.client.post(url, json=payload, headers=headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 429:
                    problem = "HTTP 429 (rate limited)"
                    retry_after = parse_retry_after(resp.headers)
                elif resp.status_code >= 500:
                    problem = f"HTTP {resp.status_code}: {_detail(resp)}"
                elif _is_duplicate(resp):
                    report.duplicate += 1
                    return
                elif resp.is_success:
                    report.accepted += 1
                    return
                else:  # a 4xx other than 429: retrying would get the same answer
                    report.failed += 1
                    report.errors.append(f"{label}: HTTP {resp.status_code}: {_detail(resp)}")
                    return
            if attempt < attempts:
                self.sleep(self.retry.delay(attempt, retry_after))
        report.failed += 1
        report.errors.append(f"{label}: gave up after {attempts} attempts: {problem}")


def submit(
    rows: Iterable[Mapping[str, Any]],
    api_url: str,
    *,
    token: str | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int = 6,
    on_progress: Callable[[SubmitReport], None] | None = None,
) -> SubmitReport:
    """Post every row's payload to ``{api_url}/api/submit``; return the counts."""
    report = SubmitReport()
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0))
    try:
        retry = dataclasses.replace(SUBMIT_RETRY, max_attempts=max_attempts)
        submitter = Submitter(http, api_url, token=token, retry=retry, sleep=sleep)
        for payload in payloads(rows, report):
            submitter.post(payload, report)
            if on_progress is not None:
                on_progress(report)
    finally:
        if own:
            http.close()
    return report
