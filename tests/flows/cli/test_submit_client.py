"""``plumbline submit``: records → Pramana payloads → a receiving API, with 429s and retries."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from flows.cli.app import main
from flows.cli.submit_client import (
    RUNNER_VERSION,
    SUBMIT_RETRY,
    SubmitError,
    load_results,
    records_for_run,
    submit,
    to_payload,
)
from tasks.catalog import load_suite
from tasks.identity import USER_SCHEDULER
from tasks.records.compaction import compact_day
from tasks.records.io import write_records
from tasks.records.schema import output_hash, to_table
from tasks.retry import parse_retry_after
from tasks.run.plan import resolve_config
from tasks.run.shard import run_shard
from tasks.run.state import mark_day, open_run
from tasks.storage.layout import day_prefix
from tasks.storage.local import LocalStore
from tests.deployments.support import free_port
from tests.support.faults import Interrupting
from tests.support.helpers import record

RUN_ID = "smoke-20261101T060000Z-abc123"


class AssertionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    passed: bool | None
    details: dict[str, Any]


class Payload(BaseModel):
    """The Pramana submit payload, strictly: an unknown or missing field is a 422."""

    model_config = ConfigDict(extra="forbid")
    model_id: str
    prompt_id: str
    output: str
    score: float | None
    assertion_result: AssertionResult
    latency_ms: float | None
    result_hash: str
    suite_hash: str | None
    suite_version: str | None
    temperature: float | None
    seed: int | None
    runner_version: str
    timestamp: datetime


def receiver(throttle_first: int = 0, retry_after: str = "2") -> tuple[FastAPI, dict[str, Any]]:
    """A small stand-in for the Plumbline API's /api/submit: validates, dedupes, rate-limits."""
    app = FastAPI()
    state: dict[str, Any] = {"calls": 0, "stored": {}, "auth": []}

    @app.post("/api/submit")
    def submit_one(payload: Payload, request: Request) -> JSONResponse:
        state["calls"] += 1
        state["auth"].append(request.headers.get("authorization"))
        if state["calls"] <= throttle_first:
            return JSONResponse({"detail": "rate limited"}, 429,
                                headers={"Retry-After": retry_after})
        if payload.result_hash != output_hash(payload.model_id, payload.prompt_id,
                                              payload.output):
            return JSONResponse({"detail": "result_hash does not match"}, 422)
        if payload.timestamp.tzinfo is None:
            return JSONResponse({"detail": "timestamp needs a timezone"}, 422)
        if payload.result_hash in state["stored"]:
            return JSONResponse({"status": "duplicate"}, 200)
        state["stored"][payload.result_hash] = payload
        return JSONResponse({"status": "accepted"}, 201)

    return app, state


def store_run(store: LocalStore, rows: list[dict[str, Any]]) -> None:
    """Rows as the runner leaves them: each run opened (its manifest), a day marker, the rows."""
    suite = load_suite("smoke")
    for run_id in sorted({r["run_id"] for r in rows}):
        mine = [r for r in rows if r["run_id"] == run_id]
        open_run(store, suite, resolve_config(suite, run_id=run_id, source="scheduled"))
        for day in {r["timestamp"].date() for r in mine}:
            mark_day(store, run_id, day)
        write_records(store, mine, user_id=USER_SCHEDULER, source="scheduled")


def _rows() -> list[dict[str, Any]]:
    return [
        record(prompt_id="c1", output="6", run_id=RUN_ID),
        record(prompt_id="c2", output="Paris", passed=False, score=0.0, run_id=RUN_ID),
        # The same model, prompt and output again (another sample): the API says duplicate.
        record(prompt_id="c1", output="6", sample_idx=1, run_id=RUN_ID),
        # A failed call: no output to compare, so nothing to submit.
        record(prompt_id="c3", output=None, error="TimeoutError: 30 s", passed=None,
               score=None, run_id=RUN_ID),
    ]


def test_submit_counts_accepted_duplicate_and_skipped_and_waits_out_429() -> None:
    app, state = receiver(throttle_first=1, retry_after="2")
    slept: list[float] = []
    report = submit(_rows(), "http://testserver", token="tok-123", client=TestClient(app),
                    sleep=slept.append)
    assert (report.accepted, report.duplicate, report.failed, report.skipped) == (2, 1, 0, 1)
    assert report.errors == []
    assert slept == [2.0]  # exactly as long as Retry-After said
    assert set(state["auth"]) == {"Bearer tok-123"}
    stored = {p.prompt_id: p for p in state["stored"].values()}
    assert stored["c1"].assertion_result.passed is True
    assert stored["c2"].assertion_result.passed is False and stored["c2"].score == 0.0
    assert stored["c2"].assertion_result.details["type"] == "contains"
    assert stored["c1"].runner_version == RUNNER_VERSION
    assert stored["c1"].timestamp == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    assert stored["c1"].result_hash.startswith("sha256:")


def test_server_errors_are_retried_with_backoff_then_counted_as_failed() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        body = json.loads(request.content)
        if body["prompt_id"] == "c2":
            return httpx.Response(400, json={"detail": "prompt_id not in suite"})
        if body["prompt_id"] == "c1" and calls["n"] <= 2:
            return httpx.Response(503, json={"detail": "storage busy"})
        if body["prompt_id"] == "c1" and calls["n"] == 3:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(201, json={"status": "accepted"})

    slept: list[float] = []
    rows = _rows()[:2]
    report = submit(rows, "http://api.test/", client=httpx.Client(
        transport=httpx.MockTransport(flaky)), sleep=slept.append)
    assert (report.accepted, report.failed) == (1, 1)
    assert slept == [1.0, 2.0, 4.0]  # 503, 503, refused: exponential backoff
    assert report.errors == ['fake/stable c2: HTTP 400: "prompt_id not in suite"']

    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")

    slept.clear()
    report = submit(rows[:1], "http://api.test", client=httpx.Client(
        transport=httpx.MockTransport(down)), sleep=slept.append, max_attempts=3)
    assert (report.accepted, report.failed) == (0, 1)
    assert len(slept) == 2
    assert "gave up after 3 attempts: HTTP 502" in report.errors[0]


def test_retry_after_accepts_seconds_and_http_dates_and_caps_them() -> None:
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def wait(value: str | None) -> float:
        headers = {"retry-after": value} if value is not None else {}
        return SUBMIT_RETRY.delay(1, parse_retry_after(headers, now=now))

    assert wait("7") == 7.0
    assert wait(format_datetime(now + timedelta(seconds=30), usegmt=True)) == 30.0
    assert wait(None) == 1.0  # no Retry-After: the backoff
    assert wait("soon") == 1.0
    assert wait("86400") == 300.0  # capped
    assert wait("-3") == 0.0


def test_results_come_from_a_run_id_a_parquet_or_a_jsonl_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    rows = _rows()
    other = record(prompt_id="c9", output="x", run_id="other-run")
    store_run(store, [*rows, other])
    got = load_results(RUN_ID, store)
    assert sorted(r["prompt_id"] for r in got) == ["c1", "c1", "c2", "c3"]
    # A custom run id (no date in it) is found the same way: through its run state.
    assert [r["prompt_id"] for r in load_results("other-run", store)] == ["c9"]
    with pytest.raises(SubmitError, match="no rows of run 'nope'"):
        load_results("nope", store)

    parquet = tmp_path / "run.parquet"
    pq.write_table(to_table(rows), parquet)
    assert len(load_results(str(parquet))) == 4

    jsonl = tmp_path / "pramana.jsonl"
    payload = to_payload(rows[0])
    assert payload is not None
    jsonl.write_text(json.dumps(payload) + "\n\n" + json.dumps(payload) + "\n")
    loaded = load_results(str(jsonl))
    assert [to_payload(r) for r in loaded] == [payload, payload]

    jsonl.write_text(json.dumps(payload) + "\n{not json\n")
    with pytest.raises(SubmitError, match=r"pramana.jsonl:2: not JSON"):
        load_results(str(jsonl))
    with pytest.raises(SubmitError, match="no such file"):
        load_results(str(tmp_path / "missing.parquet"))
    bad = dict(payload, output=None)
    with pytest.raises(SubmitError, match="line 3: payload lacks output"):
        to_payload({**bad, "_line": 3})


def test_a_run_is_found_through_its_state_once_even_while_its_day_is_compacted(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "data")
    suite = load_suite("smoke")
    as_of = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    config = resolve_config(suite, run_id="submit-me", samples=2, as_of=as_of)
    open_run(store, suite, config)
    for model in ("fake/stable", "fake/drifting"):
        run_shard(suite, model, suite.cases, config, store, flush_rows=3)  # many small files
    # Another run in the same partition: its rows are not this run's.
    neighbour = resolve_config(suite, run_id="neighbour", samples=1, as_of=as_of)
    open_run(store, suite, neighbour)
    run_shard(suite, "fake/stable", suite.cases, neighbour, store)

    def compact() -> None:
        compact_day(store, as_of.date())

    # Ops 0-1 read the run's state, op 2 lists the day's files; the compaction merges them
    # away just after that listing, before they are read.
    racing = Interrupting(store, 2, compact, after=True)
    rows = records_for_run(racing, "submit-me")  # type: ignore[arg-type]
    assert any("compacted_" in o.key for o in store.list(day_prefix(as_of.date())))
    assert len(rows) == 2 * len(suite.cases) * 2
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["run_id"] for r in rows} == {"submit-me"}
    assert {(r["model_id"], r["prompt_id"], r["sample_idx"]) for r in rows} == {
        (m, c.id, s) for m in ("fake/stable", "fake/drifting") for c in suite.cases
        for s in range(2)
    }


@pytest.fixture
def live_receiver() -> Iterator[tuple[str, dict[str, Any]]]:
    app, state = receiver(throttle_first=1, retry_after="0")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{server.config.port}", state
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_cli_submits_a_stored_run_to_a_live_api(
    data_dir: Path, live_receiver: tuple[str, dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, state = live_receiver
    store_run(LocalStore(data_dir), _rows())
    assert main(["submit", RUN_ID, "--api-url", url, "--token", "t0k"]) == 0
    out = capsys.readouterr().out
    assert "accepted 2, duplicate 1, failed 0, skipped 1" in out
    assert len(state["stored"]) == 2 and state["auth"][-1] == "Bearer t0k"

    # Resubmitting is safe: everything is a duplicate, nothing fails.
    assert main(["submit", RUN_ID, "--api-url", url]) == 0
    assert "accepted 0, duplicate 3, failed 0" in capsys.readouterr().out


def test_cli_submit_names_a_missing_file_or_run(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # never reached: the input is wrong first
    assert main(["submit", str(tmp_path / "nope.jsonl"), "--api-url", url]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    assert main(["submit", "smoke-20261101T060000Z-000000", "--api-url", url]) == 2
    assert "no rows of run 'smoke-20261101T060000Z-000000'" in capsys.readouterr().err
