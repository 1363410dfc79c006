"""``plumbline submit`` as a user runs it: the command in its own process against the real API
server (api.server.build_server, in a subprocess) limited to 60 requests per minute.

2,000 results finish in well under a minute and are stored once each; an upload SIGKILLed after
some batches were acknowledged and started again sends only the rest and stores nothing twice, and
so does one that died after the server stored a batch but before the answer was recorded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.spool import Spool
from flows.cli.submit_client import submit
from flows.cli.submit_resume import ProgressFile
from tests.api.uvicorn_server import ROOT, Server
from tests.flows.cli.submit_support import many_records, stored_rows, times_stored, write_parquet
from tests.support.faults import Crash

RESULTS = 2000
LIMIT = "60"  # requests per minute per client IP: the API's default


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Server, Path, Path]]:
    """The API server (its data and spool folders), stopped with SIGTERM: the final flush."""
    data, spool = tmp_path / "api-data", tmp_path / "api-spool"
    server = Server({
        "PLUMBLINE_DATA_DIR": str(data), "PLUMBLINE_SPOOL_DIR": str(spool),
        "PLUMBLINE_STORAGE": "local", "RATE_LIMIT_PER_MINUTE": LIMIT,
    }, tmp_path / "server.log")
    try:
        server.wait_ready()
        yield server, data, spool
    finally:
        server.stop()


def _cli(args: list[str], client_data: Path) -> subprocess.Popen[str]:
    """``plumbline submit ...`` in its own process, with its own data dir (the progress file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUMBLINE_")}
    env.update({"PLUMBLINE_DATA_DIR": str(client_data), "PLUMBLINE_STORAGE": "local",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])})
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "submit", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop_and_count(server: Server, data: Path, spool: Path) -> list[dict[str, object]]:
    server.stop()  # SIGTERM: the lifespan flushes the spool to the store
    left = Spool(spool)
    try:
        assert left.pending_count() == 0
    finally:
        left.close()
    return stored_rows(data)


def _acked_lines(progress_dir: Path) -> int:
    files = list(progress_dir.glob("*.jsonl")) if progress_dir.is_dir() else []
    if not files:
        return 0
    return max(0, files[0].read_text().count("\n") - 1)  # less the header


def test_2000_results_take_under_a_minute_at_60_requests_per_minute(
    api: tuple[Server, Path, Path], tmp_path: Path,
) -> None:
    server, data, spool = api
    results = write_parquet(tmp_path / "results.parquet", many_records(RESULTS))
    started = time.monotonic()
    cli = _cli([str(results), "--api-url", server.url], tmp_path / "client-data")
    out, err = cli.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert cli.returncode == 0, err
    print(f"{RESULTS} results in {elapsed:.1f} s (the CLI's start included)")
    assert elapsed < 60
    assert f"accepted {RESULTS}, duplicate 0, failed 0" in out
    assert "in 4 request(s)" in out  # 500 a batch, far below 60 a minute
    assert not list((tmp_path / "client-data" / "submit").iterdir())  # done: no progress left

    stored = _stop_and_count(server, data, spool)
    counts = times_stored(stored)
    assert len(stored) == RESULTS and len(counts) == RESULTS and set(counts.values()) == {1}
    assert len({r["id"] for r in stored}) == RESULTS


def test_killed_halfway_and_restarted_it_stores_nothing_twice(
    api: tuple[Server, Path, Path], tmp_path: Path,
) -> None:
    server, data, spool = api
    results = write_parquet(tmp_path / "results.parquet", many_records(RESULTS))
    client_data = tmp_path / "client-data"
    # 50 batches of 40: both runs together stay under 60 requests in the minute.
    args = [str(results), "--api-url", server.url, "--batch-size", "40"]
    cli = _cli(args, client_data)
    deadline = time.monotonic() + 60
    while _acked_lines(client_data / "submit") < 10 and time.monotonic() < deadline:
        assert cli.poll() is None, cli.communicate()
        time.sleep(0.002)
    cli.send_signal(signal.SIGKILL)
    cli.communicate(timeout=10)
    assert cli.returncode == -signal.SIGKILL
    acked_batches = _acked_lines(client_data / "submit")
    assert 10 <= acked_batches < 50, "killed halfway, not after the end"

    again = _cli(args, client_data)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "resuming: progress of an earlier run" in out
    summary = out.strip().splitlines()[-1]
    print(f"killed after {acked_batches} acknowledged batches; then: {summary}")
    assert f"failed 0, skipped 0 (failed calls: nothing to submit), {acked_batches * 40} " \
           "acknowledged earlier" in summary
    # At most the batch in flight at the kill is sent again (and answered duplicate).
    accepted = int(summary.split(",")[0].split()[1])
    duplicate = int(summary.split(",")[1].split()[1])
    assert accepted + duplicate == RESULTS - acked_batches * 40 and duplicate <= 40

    stored = _stop_and_count(server, data, spool)
    counts = times_stored(stored)
    assert len(stored) == RESULTS and len(counts) == RESULTS and set(counts.values()) == {1}


class DiesAfterAnswer(httpx.HTTPTransport):
    """The client process dies right after the server answered request ``n``: the server stored
    that batch, the client never recorded it."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.calls += 1
        if self.calls == self.n:
            response.read()
            response.close()
            raise Crash(f"died after the answer to request {self.n}")
        return response


def test_a_batch_stored_but_not_recorded_is_sent_again_and_stored_once(
    api: tuple[Server, Path, Path], tmp_path: Path,
) -> None:
    server, data, spool = api
    rows = many_records(RESULTS)
    folder = tmp_path / "client-data" / "submit"
    progress = ProgressFile.open(folder, source="bulk", api_url=server.url, token=None)
    with httpx.Client(transport=DiesAfterAnswer(3)) as client, pytest.raises(Crash):
        submit(rows, server.url, client=client, progress=progress, batch_size=200)
    progress.close()

    progress = ProgressFile.open(folder, source="bulk", api_url=server.url, token=None)
    report = submit(rows, server.url, progress=progress, batch_size=200)
    progress.finish()
    # Batches 1-2 skipped; batch 3 sent again, answered duplicate; the other seven new.
    assert (report.resumed, report.duplicate, report.accepted, report.failed) == (
        400, 200, 1400, 0)

    stored = _stop_and_count(server, data, spool)
    counts = times_stored(stored)
    assert len(stored) == RESULTS and len(counts) == RESULTS and set(counts.values()) == {1}
