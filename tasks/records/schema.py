"""The record: one row per (run, model, case, sample), defined once for every reader and writer.

A superset of the Pramana seed's Parquet schema. Bump ``SCHEMA_VERSION`` when a column changes;
readers use ``conform`` so that older files (fewer columns) still load.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    RECORD_SCHEMA: pa.Schema

SCHEMA_VERSION = 1

# One row's columns: (name, Arrow type, nullable). Plain data, so that writing a record needs no
# pyarrow (~0.1 s to import with numpy): ``RECORD_SCHEMA`` is built from it on first use.
_FIELDS: tuple[tuple[str, str, bool], ...] = (
    # --- the seed's columns ---
    ("id", "string", False),
    ("timestamp", "timestamp_utc", False),
    ("user_id", "string", False),
    ("model_id", "string", False),
    ("prompt_id", "string", False),
    ("output", "string", True),
    ("output_hash", "string", False),
    ("metadata_json", "string", True),
    ("year", "int32", False),
    ("month", "int32", False),
    ("day", "int32", False),
    # --- Plumbline's ---
    ("run_id", "string", False),
    ("source", "string", False),
    ("suite", "string", True),
    ("suite_version", "string", True),
    ("suite_hash", "string", True),
    ("category", "string", True),
    ("sample_idx", "int32", False),
    ("temperature", "float64", True),
    ("seed", "int64", True),
    ("passed", "bool_", True),
    ("score", "float64", True),
    ("assertion_type", "string", True),
    ("score_reason", "string", True),
    ("finish_reason", "string", True),
    ("latency_ms", "float64", True),
    ("input_tokens", "int64", True),
    ("output_tokens", "int64", True),
    ("cost_usd", "float64", True),
    # Stored at write time so aggregation never has to read the `output` column for it.
    ("output_len", "int32", True),
    ("error", "string", True),
    ("schema_version", "int16", False),
)
COLUMNS: tuple[str, ...] = tuple(name for name, _, _ in _FIELDS)
REQUIRED: frozenset[str] = frozenset(name for name, _, nullable in _FIELDS if not nullable) - {
    # Derived by `make_record` when not given.
    "id",
    "output_hash",
    "year",
    "month",
    "day",
    "schema_version",
}


@cache
def record_schema() -> pa.Schema:
    """The Arrow schema of a record (also ``RECORD_SCHEMA``), built once from ``_FIELDS``."""
    import pyarrow as pa

    def arrow_type(name: str) -> pa.DataType:
        return pa.timestamp("us", tz="UTC") if name == "timestamp_utc" else getattr(pa, name)()

    return pa.schema([pa.field(name, arrow_type(kind), nullable=nullable)
                      for name, kind, nullable in _FIELDS],
                     metadata={"plumbline.schema_version": str(SCHEMA_VERSION)})


def __getattr__(name: str) -> Any:
    if name == "RECORD_SCHEMA":
        return record_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    import pyarrow as pa

    rows = list(records)
    columns = {name: [row.get(name) for row in rows] for name in COLUMNS}
    return pa.Table.from_pydict(columns, schema=record_schema())


def conform(table: pa.Table) -> pa.Table:
    """A table read from storage, cast to the current schema (missing columns become null).

    Raises ``ValueError`` naming a column whose type cannot be cast.
    """
    import pyarrow as pa

    schema = record_schema()
    arrays = []
    for field in schema:
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
    return pa.Table.from_arrays(arrays, schema=schema)
