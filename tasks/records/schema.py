"""The record: one row per (run, model, case, sample), defined once for every reader and writer.

A superset of the Pramana seed's Parquet schema. Bump ``SCHEMA_VERSION`` when a column changes;
readers use ``conform`` so that older files (fewer columns) still load.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1

RECORD_SCHEMA = pa.schema(
    [
        # --- the seed's columns ---
        pa.field("id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("output", pa.string()),
        pa.field("output_hash", pa.string(), nullable=False),
        pa.field("metadata_json", pa.string()),
        pa.field("year", pa.int32(), nullable=False),
        pa.field("month", pa.int32(), nullable=False),
        pa.field("day", pa.int32(), nullable=False),
        # --- Plumbline's ---
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("suite", pa.string()),
        pa.field("suite_version", pa.string()),
        pa.field("suite_hash", pa.string()),
        pa.field("category", pa.string()),
        pa.field("sample_idx", pa.int32(), nullable=False),
        pa.field("temperature", pa.float64()),
        pa.field("seed", pa.int64()),
        pa.field("passed", pa.bool_()),
        pa.field("score", pa.float64()),
        pa.field("assertion_type", pa.string()),
        pa.field("score_reason", pa.string()),
        pa.field("finish_reason", pa.string()),
        pa.field("latency_ms", pa.float64()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("cost_usd", pa.float64()),
        # Stored at write time so aggregation never has to read the `output` column for it.
        pa.field("output_len", pa.int32()),
        pa.field("error", pa.string()),
        pa.field("schema_version", pa.int16(), nullable=False),
    ],
    metadata={"plumbline.schema_version": str(SCHEMA_VERSION)},
)

COLUMNS: tuple[str, ...] = tuple(RECORD_SCHEMA.names)
REQUIRED: frozenset[str] = frozenset(f.name for f in RECORD_SCHEMA if not f.nullable) - {
    # Derived by `make_record` when not given.
    "id",
    "output_hash",
    "year",
    "month",
    "day",
    "schema_version",
}


def output_hash(model_id: str, prompt_id: str, output: str | None) -> str:
    """The seed's result hash: ``sha256:`` of ``model_id|prompt_id|output``."""
    digest = hashlib.sha256(f"{model_id}|{prompt_id}|{output or ''}".encode()).hexdigest()
    return f"sha256:{digest}"


def make_record(**fields: Any) -> dict[str, Any]:
    """A complete record dict from the given fields, deriving id, hash, partition columns, length.

    Raises ``ValueError`` naming any unknown or missing field: a typo never becomes a silent null.
    """
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown record field(s): {', '.join(sorted(unknown))}")
    missing = [name for name in sorted(REQUIRED) if fields.get(name) is None]
    if missing:
        raise ValueError(f"missing record field(s): {', '.join(missing)}")
    ts: datetime = fields["timestamp"]
    if ts.tzinfo is None:
        raise ValueError("record field 'timestamp' must be timezone-aware (UTC)")
    ts = ts.astimezone(UTC)
    output = fields.get("output")
    record: dict[str, Any] = dict.fromkeys(COLUMNS)
    record.update(fields)
    record["timestamp"] = ts
    record["id"] = fields.get("id") or str(uuid.uuid4())
    record["output_hash"] = fields.get("output_hash") or output_hash(
        fields["model_id"], fields["prompt_id"], output
    )
    record["year"], record["month"], record["day"] = ts.year, ts.month, ts.day
    if record.get("output_len") is None:
        record["output_len"] = len(output) if output is not None else None
    record["schema_version"] = SCHEMA_VERSION
    return record


def to_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Records (as from ``make_record``) to an Arrow table in the record schema."""
    rows = list(records)
    columns = {name: [row.get(name) for row in rows] for name in COLUMNS}
    return pa.Table.from_pydict(columns, schema=RECORD_SCHEMA)


def conform(table: pa.Table) -> pa.Table:
    """A table read from storage, cast to the current schema (missing columns become null).

    Raises ``ValueError`` naming a column whose type cannot be cast.
    """
    arrays = []
    for field in RECORD_SCHEMA:
        if field.name in table.column_names:
            column = table.column(field.name)
            if not column.type.equals(field.type):
                try:
                    column = column.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ValueError(
                        f"column {field.name!r} has type {column.type}, expected {field.type}"
                    ) from exc
            arrays.append(column)
        else:
            arrays.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(arrays, schema=RECORD_SCHEMA)
