"""The record schema: one definition, derived fields, and round-trips through Parquet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from tasks.records.io import parquet_to_table, table_to_parquet, write_records
from tasks.records.live import read_day
from tasks.records.schema import (
    COLUMNS,
    RECORD_SCHEMA,
    SCHEMA_VERSION,
    conform,
    output_hash,
    to_table,
)
from tests.support.helpers import record

SEED_COLUMNS = ["id", "timestamp", "user_id", "model_id", "prompt_id", "output", "output_hash",
                "metadata_json", "year", "month", "day"]


def test_schema_is_a_superset_of_the_seed_schema() -> None:
    assert COLUMNS[: len(SEED_COLUMNS)] == tuple(SEED_COLUMNS)
    for name in ("run_id", "source", "suite", "suite_hash", "sample_idx", "passed", "score",
                 "latency_ms", "input_tokens", "output_tokens", "cost_usd", "error",
                 "output_len", "schema_version"):
        assert name in COLUMNS
    assert RECORD_SCHEMA.field("timestamp").type == pa.timestamp("us", tz="UTC")


def test_output_hash_is_the_seed_hash() -> None:
    import hashlib

    expected = "sha256:" + hashlib.sha256(b"openai/gpt-4o|p1|hello").hexdigest()
    assert output_hash("openai/gpt-4o", "p1", "hello") == expected


def test_make_record_derives_partition_hash_length_and_version() -> None:
    ts = datetime(2026, 3, 4, 23, 30, tzinfo=timezone(timedelta(hours=-2)))  # 5 March in UTC
    rec = record(timestamp=ts, output="abc")
    assert (rec["year"], rec["month"], rec["day"]) == (2026, 3, 5)
    assert rec["timestamp"].tzinfo == UTC
    assert rec["output_hash"] == output_hash("fake/stable", "case-1", "abc")
    assert rec["output_len"] == 3
    assert rec["schema_version"] == SCHEMA_VERSION
    assert len(rec["id"]) == 36


def test_make_record_refuses_unknown_missing_and_naive_fields() -> None:
    with pytest.raises(ValueError, match=r"unknown record field.*modle_id"):
        record(modle_id="x")
    with pytest.raises(ValueError, match=r"missing record field.*run_id"):
        record(run_id=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        record(timestamp=datetime(2026, 1, 1))


def test_parquet_round_trip_keeps_every_column_and_zstd() -> None:
    rows = [record(prompt_id=f"p{i}", passed=i % 2 == 0, cost_usd=None) for i in range(5)]
    data = table_to_parquet(to_table(rows))
    back = parquet_to_table(data)
    assert back.schema.names == list(COLUMNS)
    assert back.column("prompt_id").to_pylist() == [f"p{i}" for i in range(5)]
    assert back.column("cost_usd").null_count == 5  # unknown cost stays unknown, not 0
    import io

    import pyarrow.parquet as pq

    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_conform_fills_columns_missing_from_older_files() -> None:
    old = to_table([record()]).drop_columns(["output_len", "finish_reason"])
    table = conform(old)
    assert table.schema.names == list(COLUMNS)
    assert table.column("output_len").to_pylist() == [None]


def test_write_records_partitions_by_day_and_user(store) -> None:  # type: ignore[no-untyped-def]
    day1 = datetime(2026, 11, 1, 6, tzinfo=UTC)
    rows = [record(timestamp=day1), record(timestamp=day1 + timedelta(days=1))]
    keys = write_records(store, rows, user_id="scheduler", source="scheduled")
    assert len(keys) == 2
    assert keys[0].startswith("raw/year=2026/month=11/day=01/user=scheduler/scheduled_")
    assert keys[1].startswith("raw/year=2026/month=11/day=02/user=scheduler/scheduled_")
    assert read_day(store, day1.date()).column("id").to_pylist() == [rows[0]["id"]]


def test_write_records_refuses_rows_that_disagree_with_their_partition(store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="expected 'anonymous'"):
        write_records(store, [record()], user_id="anonymous", source="scheduled")
