"""End to end on the embedded default: the demo's flows write Parquet, the API serves the chart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from flows.cli.app import main
from tasks.records.schema import RECORD_SCHEMA

pytestmark = pytest.mark.prefect

DAYS = 3
MODELS = ["fake/stable", "fake/drifting"]
SMOKE_CASES, SMOKE_SAMPLES = 8, 3
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_data(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("demo") / "data"
    _demo(data)
    return data


def _demo(data: Path) -> None:
    """``plumbline demo --no-serve`` with the data folder set as a user would, in the env."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PLUMBLINE_DATA_DIR", str(data))
        assert main(["demo", "--no-serve", "--days", str(DAYS)]) == 0


def test_demo_writes_record_schema_parquet_in_hive_partitions(demo_data: Path) -> None:
    files = sorted((demo_data / "raw").rglob("*.parquet"))
    assert files, "no raw Parquet written"
    today = datetime.now(UTC).date()
    expected_days = {today - timedelta(days=i) for i in range(DAYS)}
    seen_days = set()
    rows = 0
    for f in files:
        rel = f.relative_to(demo_data / "raw").parts
        assert rel[0].startswith("year=") and rel[1].startswith("month=")
        assert rel[2].startswith("day=") and rel[3] == "user=scheduler", rel
        assert len(rel[1]) == len("month=MM") and len(rel[2]) == len("day=DD")  # zero-padded
        table = pq.read_table(f, partitioning=None)
        assert table.schema.equals(RECORD_SCHEMA, check_metadata=False)
        day = datetime.strptime("".join(p.split("=")[1] for p in rel[:3]), "%Y%m%d").date()
        seen_days.add(day)
        assert set(table.column("day").to_pylist()) == {day.day}
        assert set(table.column("user_id").to_pylist()) == {"scheduler"}
        assert set(table.column("source").to_pylist()) == {"scheduled"}
        assert set(table.column("suite").to_pylist()) == {"smoke"}
        assert table.column("output_hash").null_count == 0
        rows += table.num_rows
    assert seen_days == expected_days
    assert rows == DAYS * len(MODELS) * SMOKE_CASES * SMOKE_SAMPLES


def test_demo_publishes_one_chart_entry_per_simulated_day(demo_data: Path) -> None:
    chart = json.loads((demo_data / "summaries/latest/chart.json").read_text())
    per_model_day = SMOKE_CASES * SMOKE_SAMPLES
    assert chart["models"] == sorted(MODELS)
    assert [e["date"] for e in chart["data"]] == sorted(
        (datetime.now(UTC).date() - timedelta(days=i)).isoformat() for i in range(DAYS))
    for entry in chart["data"]:
        assert {m: entry[m] for m in MODELS} == dict.fromkeys(MODELS, per_model_day)
    assert chart["total_submissions"] == DAYS * len(MODELS) * per_model_day
    assert list((demo_data / "summaries/daily").rglob("part-0.parquet"))


def test_demo_is_idempotent(demo_data: Path) -> None:
    before = sorted(p.name for p in (demo_data / "raw").rglob("*.parquet"))
    # Re-running reads the same folder and skips the simulated days: no duplicate rows.
    _demo(demo_data)
    chart = json.loads((demo_data / "summaries/latest/chart.json").read_text())
    assert chart["total_submissions"] == DAYS * len(MODELS) * SMOKE_CASES * SMOKE_SAMPLES
    assert sorted(p.name for p in (demo_data / "raw").rglob("*.parquet")) == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_plumbline_api_serves_the_chart_and_health(demo_data: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PLUMBLINE_DATA_DIR": str(demo_data)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{base}/api/health", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise AssertionError(err) from None
                time.sleep(0.2)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["last_nightly"] is not None
        chart = httpx.get(f"{base}/api/data/chart", timeout=5)
        assert chart.status_code == 200
        assert chart.json() == json.loads(
            (demo_data / "summaries/latest/chart.json").read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
