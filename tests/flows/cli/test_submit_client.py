"""``plumbline submit``'s client against the real API (in-process) with faults in front of
it: batches, 429s, a smaller body limit, refused items, a refused token, an older API; and the
command itself against the real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from api.schemas import MAX_BATCH
from api.server import build_server
from flows.cli.app import main
from flows.cli.submit import progress_view
from flows.cli.submit_client import (
    DEFAULT_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    SUBMIT_RETRY,
    Item,
    SubmitReport,
    batches,
    submit,
)
from flows.cli.submit_resume import ProgressFile
from flows.cli.submit_source import RUNNER_VERSION, to_payload
from tasks.records.schema import to_table
from tasks.retry import parse_retry_after
from tasks.settings import Settings
from tasks.storage.local import LocalStore
from tests.api.conftest import USER_A, make_token
from tests.api.uvicorn_server import serve_in_thread
from tests.deployments.support import free_port
from tests.flows.cli.submit_support import (
    RUN_ID,
    SECRET,
    many_records,
    real_api,
    sample_rows,
    store_run,
    times_stored,
)
from tests.support.helpers import record

API = "http://testserver"


def _reply(status: int, body: Any = None, **headers: str) -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return status, {"content-type": "application/json", **headers}, data


def test_batches_hold_at_most_the_apis_items_and_the_byte_budget() -> None:
    assert MAX_BATCH_ITEMS == MAX_BATCH
    assert Settings.model_fields["max_body_bytes"].default >= DEFAULT_BATCH_BYTES
    items = [Item(f"r{i}", f"{i:032x}", b"x" * 100) for i in range(1200)]
    sizes = [len(b) for b in batches(items, 500, lambda: 10**9)]
    assert sizes == [500, 500, 200]
    # 14 bytes of {"results":[]} plus 100 per item and a comma between: 9 fit in 1,000 bytes.
    small = list(batches(items[:20], 500, lambda: 1000))
    assert [len(b) for b in small] == [9, 9, 2]
    big = Item("big", "f" * 32, b"y" * 5000)  # larger than the budget: sent alone
    assert [len(b) for b in batches([items[0], big, items[1]], 500, lambda: 1000)] == [1, 1, 1]


# --- against the real API -------------------------------------------------------------------

def test_1200_results_take_three_requests_and_sending_them_again_stores_nothing(
    tmp_path: Path,
) -> None:
    rows = many_records(1200)
    with real_api(tmp_path) as api:
        report = submit(rows, API, client=api.client)
        assert (report.accepted, report.duplicate, report.failed) == (1200, 0, 0)
        assert api.front.paths == ["/api/submit/batch"] * 3 and report.requests == 3
        stored = times_stored(api.pending())
        # Ten samples of each prompt share output and timestamp: still ten results.
        assert len(stored) == 1200 and set(stored.values()) == {1}

        again = submit(rows, API, client=api.client)
        assert (again.accepted, again.duplicate, again.failed) == (0, 1200, 0)
        assert len(api.pending()) == 1200


def test_one_by_one_counts_accepted_and_skipped_and_waits_out_429(tmp_path: Path) -> None:
    def throttle_first(path: str, n: int) -> Any:
        return _reply(429, {"detail": "rate limited"}, **{"Retry-After": "2"}) if n == 1 else None

    slept: list[float] = []
    token = make_token()
    with real_api(tmp_path, throttle_first) as api:
        report = submit(sample_rows(), API, token=token, client=api.client, sleep=slept.append,
                        one_by_one=True)
        assert (report.accepted, report.duplicate, report.failed, report.skipped) == (3, 0, 0, 1)
        assert report.errors == []
        assert slept == [2.0]  # exactly as long as Retry-After said
        assert set(api.front.paths) == {"/api/submit"} and api.front.calls == 4
        stored = {(r["prompt_id"], r["sample_idx"]): r for r in api.pending()}
        assert set(stored) == {("c1", 0), ("c1", 1), ("c2", 0)}
        assert {r["user_id"] for r in stored.values()} == {USER_A}
        assert {r["run_id"] for r in stored.values()} == {RUN_ID}
        assert stored["c1", 0]["passed"] is True
        assert stored["c2", 0]["passed"] is False and stored["c2", 0]["score"] == 0.0
        assert stored["c2", 0]["timestamp"] == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
        assert json.loads(stored["c1", 0]["metadata_json"])["runner_version"] == RUNNER_VERSION

        again = submit(sample_rows(), API, token=token, client=api.client, one_by_one=True)
        assert (again.accepted, again.duplicate) == (0, 3)


def test_a_429_on_a_batch_is_waited_out_without_using_up_the_attempts(tmp_path: Path) -> None:
    def throttle(path: str, n: int) -> Any:
        return _reply(429, {"detail": "slow down"}, **{"Retry-After": "3"}) if n <= 8 else None

    slept: list[float] = []
    with real_api(tmp_path, throttle) as api:
        report = submit(many_records(50), API, client=api.client, sleep=slept.append,
                        max_attempts=2)
        assert (report.accepted, report.failed) == (50, 0)
        assert slept == [3.0] * 8 and report.requests == 9
        assert len(api.pending()) == 50


def test_a_smaller_body_limit_is_learned_from_413_and_an_oversized_result_fails_alone(
    tmp_path: Path,
) -> None:
    rows = many_records(600)
    huge = record(prompt_id="huge", output="z" * 80_000, run_id="bulk-run")
    rows.insert(300, huge)
    with real_api(tmp_path, max_body_bytes=64 * 1024) as api:
        report = submit(rows, API, client=api.client)
        assert (report.accepted, report.failed) == (600, 1)
        assert report.errors[0].startswith("fake/stable huge: HTTP 413")
        assert len(api.pending()) == 600
        # Three 413s teach the client the limit (a 500-result batch of ~250 kB, then halves);
        # after that only the oversized result is refused.
        assert api.front.statuses[:3] == [413] * 3
        assert api.front.statuses[3:].count(413) == 1


def test_a_batch_refused_for_some_items_stores_the_others_and_names_them(
    tmp_path: Path,
) -> None:
    rows: list[dict[str, Any]] = list(many_records(10))
    rows.insert(4, record(model_id="fake/bad model", prompt_id="p-bad", run_id="bulk-run"))
    good = to_payload(rows[0])
    assert good is not None
    forged = {**good, "prompt_id": "p-forged", "run_id": None,
              "result_hash": "sha256:" + "0" * 64}
    with real_api(tmp_path) as api:
        report = submit([*rows, forged], API, client=api.client)
        assert (report.accepted, report.failed) == (10, 2)
        assert any(e.startswith("fake/bad model p-bad: HTTP 422: model_id: ") for e in
                   report.errors), report.errors
        assert any(e.startswith("fake/stable p-forged: HTTP 422: result_hash") for e in
                   report.errors), report.errors
        assert len(api.pending()) == 10


def test_a_refused_token_stops_the_upload(tmp_path: Path) -> None:
    with real_api(tmp_path) as api:
        report = submit(many_records(1200), API, token=make_token(exp_in=-10), client=api.client,
                        batch_size=100)
        assert report.aborted is not None and "refused the token: HTTP 401" in report.aborted
        assert "expired" in report.aborted
        assert report.requests == 1 and api.pending() == []


def test_an_api_without_the_batch_endpoint_gets_one_result_per_request(tmp_path: Path) -> None:
    def older_api(path: str, n: int) -> Any:
        return _reply(404, {"detail": "Not Found"}) if path.endswith("/batch") else None

    with real_api(tmp_path, older_api) as api:
        report = submit(many_records(30), API, client=api.client, batch_size=10)
        assert report.fell_back and (report.accepted, report.failed) == (30, 0)
        assert api.front.paths == ["/api/submit/batch"] + ["/api/submit"] * 30
        assert len(api.pending()) == 30


def test_an_answer_that_is_not_the_apis_is_never_taken_for_an_acknowledgement(
    tmp_path: Path,
) -> None:
    def portal(path: str, n: int) -> Any:
        return 200, {"content-type": "text/html"}, b"<html>please sign in</html>"

    progress = ProgressFile.open(tmp_path / "progress", source="s", api_url=API, token=None)
    with real_api(tmp_path, portal) as api:
        report = submit(many_records(20), API, client=api.client, progress=progress)
    assert (report.accepted, report.failed) == (0, 20)
    assert "HTTP 200 without a batch answer" in report.errors[0]
    assert progress.acked == set()
    progress.close()


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
    rows = sample_rows()[:2]
    report = submit(rows, "http://api.test/", client=httpx.Client(
        transport=httpx.MockTransport(flaky)), sleep=slept.append, one_by_one=True)
    assert (report.accepted, report.failed) == (1, 1)
    assert slept == [1.0, 2.0, 4.0]  # 503, 503, refused: exponential backoff
    assert report.errors == ['fake/stable c2: HTTP 400: "prompt_id not in suite"']

    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")

    slept.clear()
    report = submit(rows, "http://api.test", client=httpx.Client(
        transport=httpx.MockTransport(down)), sleep=slept.append, max_attempts=3)
    assert (report.accepted, report.failed) == (0, 2)  # one batch of two, given up
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


# --- the command ------------------------------------------------------------------------------

@pytest.fixture
def live_api(tmp_path: Path) -> Iterator[str]:
    """The real app under the production server configuration, in a thread."""
    settings = Settings(data_dir=tmp_path / "api-data", spool_dir=tmp_path / "api-spool",
                        nextauth_secret=SECRET, spool_flush_seconds=3600)
    with serve_in_thread(build_server(settings, log_level="warning")) as url:
        yield url


def test_cli_submits_a_stored_run_to_a_live_api(
    data_dir: Path, live_api: str, capsys: pytest.CaptureFixture[str],
) -> None:
    store_run(LocalStore(data_dir), sample_rows())
    token = make_token()
    assert main(["submit", RUN_ID, "--api-url", live_api, "--token", token]) == 0
    out = capsys.readouterr().out
    assert "in batches of up to 500" in out
    assert "  3/3: 3 accepted, 0 duplicate, 0 failed" in out  # plain lines, not a bar, in a pipe
    assert "accepted 3, duplicate 0, failed 0, skipped 1" in out
    assert "in 1 request(s)" in out
    assert not any((data_dir / "submit").iterdir())  # all acknowledged: no progress left

    # Resubmitting is safe: everything is a duplicate, nothing fails.
    assert main(["submit", RUN_ID, "--api-url", live_api, "--one-by-one", "--token", token]) == 0
    assert "accepted 0, duplicate 3, failed 0" in capsys.readouterr().out
    # Anonymously, the same results are another user's: stored for them.
    assert main(["submit", RUN_ID, "--api-url", live_api]) == 0
    assert "accepted 3, duplicate 0, failed 0" in capsys.readouterr().out


def test_cli_keeps_the_progress_of_an_upload_with_failures(
    data_dir: Path, live_api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [*many_records(30), record(model_id="fake/bad model", run_id="bulk-run")]
    path = tmp_path / "results.parquet"
    pq.write_table(to_table(rows), path)
    assert main(["submit", str(path), "--api-url", live_api, "--batch-size", "10"]) == 1
    captured = capsys.readouterr()
    assert "accepted 30, duplicate 0, failed 1" in captured.out
    assert "failed: fake/bad model case-1: HTTP 422: model_id" in captured.err
    assert "progress kept in" in captured.err
    # Run again: only the failed one is sent.
    assert main(["submit", str(path), "--api-url", live_api]) == 1
    assert "30 acknowledged earlier, in 1 request(s)" in capsys.readouterr().out
    assert main(["submit", str(path), "--api-url", live_api, "--batch-size", "501"]) == 2
    assert "--batch-size must be 1-500" in capsys.readouterr().err


def test_cli_submit_names_a_missing_file_or_run(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # never reached: the input is wrong first
    assert main(["submit", str(tmp_path / "nope.jsonl"), "--api-url", url]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    assert main(["submit", "smoke-20261101T060000Z-000000", "--api-url", url]) == 2
    assert "no rows of run 'smoke-20261101T060000Z-000000'" in capsys.readouterr().err


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def feed(view: Any) -> None:
        for done in (0, 50, 500, 1000, 1200):
            view(SubmitReport(total=1200, accepted=done))

    with progress_view() as view:  # stderr is captured: not a terminal
        feed(view)
    out = capsys.readouterr().out
    assert out.splitlines() == ["  500/1200: 500 accepted, 0 duplicate, 0 failed",
                                "  1000/1200: 1000 accepted, 0 duplicate, 0 failed",
                                "  1200/1200: 1200 accepted, 0 duplicate, 0 failed"]
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat stderr as a terminal
    with progress_view() as view:
        feed(view)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "1200/1200" in captured.err and "1200 accepted" in captured.err
