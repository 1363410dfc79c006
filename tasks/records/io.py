"""Parquet in and out of the object store, always in the record schema, always ZSTD level 9.

ZSTD 9 because raw data is written once and read many times: it is ~30 % smaller than the default
level on LLM text at a write cost that is negligible next to the LLM call that produced the row.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.errors import StorageError
from tasks.records.schema import RECORD_SCHEMA, conform, to_table
from tasks.storage.base import ObjectStore
from tasks.storage.layout import raw_key

COMPRESSION = "zstd"
COMPRESSION_LEVEL = 9
# Row groups sized for reading: big enough that a day reads in a few groups, small enough that
# a reader can stream them. The row cap applies to small rows; the byte target keeps a group of
# long LLM outputs from growing past what a reader wants to hold in memory at once.
ROW_GROUP_SIZE = 128 * 1024
ROW_GROUP_TARGET_BYTES = 64 * 1024 * 1024
# A reader whose listed files vanish (compaction moved their rows) lists again, this many times,
# pausing a little longer each time so it does not chase a compaction step by step.


def row_group_rows(table: pa.Table, target_bytes: int = ROW_GROUP_TARGET_BYTES) -> int:
    """Rows per row group for ``table``: ~``target_bytes`` uncompressed (64 MiB), between 1024
    and ``ROW_GROUP_SIZE`` rows."""
    if table.num_rows == 0:
        return ROW_GROUP_SIZE
    per_row = max(1, table.nbytes // table.num_rows)
    return max(1024, min(ROW_GROUP_SIZE, target_bytes // per_row))


def table_to_parquet(table: pa.Table, *, row_group_size: int | None = None) -> bytes:
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        row_group_size=row_group_size or row_group_rows(table),
    )
    return buf.getvalue()


def parquet_to_table(data: bytes, columns: Sequence[str] | None = None) -> pa.Table:
    # ParquetFile skips the dataset layer that read_table goes through: ~30 % less fixed cost
    # per file, which is most of the cost of reading a day of one-row files. Threads only pay
    # off on big files.
    return pq.ParquetFile(io.BytesIO(data)).read(
        columns=list(columns) if columns else None, use_threads=len(data) > 1 << 20
    )


def write_records(
    store: ObjectStore, records: Iterable[Mapping[str, Any]], *, user_id: str, source: str
) -> list[str]:
    """Write records to raw partitions, one file per partition day; return the keys written.

    Every record must carry the given ``user_id`` and ``source``: a file's partition and its rows
    never disagree.
    """
    by_day: dict[date, list[Mapping[str, Any]]] = {}
    for rec in records:
        if rec["user_id"] != user_id or rec["source"] != source:
            raise ValueError(
                f"record {rec['id']} has user_id={rec['user_id']!r} source={rec['source']!r}, "
                f"expected {user_id!r}/{source!r}"
            )
        by_day.setdefault(rec["timestamp"].date(), []).append(rec)
    keys = []
    for rows in by_day.values():
        key = raw_key(rows[0]["timestamp"], user_id, source)
        store.put(key, table_to_parquet(to_table(rows)))
        keys.append(key)
    return keys


def _read_one(
    store: ObjectStore, key: str, columns: Sequence[str] | None, run_id: str | None = None
) -> pa.Table:
    data = store.get(key)
    try:
        if run_id is None:
            table = conform(parquet_to_table(data))
        else:
            # read_table's filter skips row groups whose statistics rule the run out.
            table = conform(pq.read_table(io.BytesIO(data), filters=[("run_id", "==", run_id)]))
    except (pa.ArrowInvalid, ValueError) as exc:
        raise StorageError(f"not a readable record file: {exc}", key=key) from exc
    return table.select(list(columns)) if columns else table


def _conform_columns(table: pa.Table, columns: Sequence[str] | None) -> pa.Table:
    if not columns:
        return conform(table)
    fields = [RECORD_SCHEMA.field(c) for c in columns]
    arrays = [table.column(f.name).cast(f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def read_files(
    store: ObjectStore, keys: Sequence[str], columns: Sequence[str] | None = None,
    *, run_id: str | None = None,
) -> pa.Table:
    """Read exactly these raw files into one table; raises ``KeyError`` if one is missing.

    ``run_id`` keeps only that run's rows, filtered while each file is read.

    On a store with local paths, many files are read in one multi-threaded Polars scan (about
    20x faster than file by file for a day of one-row files); otherwise, or if the scan fails,
    file by file, so a bad file is reported by name.
    """
    paths = [store.local_path(k) for k in keys]
    if len(keys) > 1 and all(p is not None for p in paths):
        # Imported here, not with this module: `plumbline run` imports this module before its
        # first call, and Polars only to read rows back (docs/benchmarks.md, "Run cost").
        import polars as pl

        try:
            frame = pl.scan_parquet(
                [str(p) for p in paths], schema=polars_schema(), hive_partitioning=False,
                glob=False, missing_columns="insert", extra_columns="ignore",
            )
            if run_id is not None:
                frame = frame.filter(pl.col("run_id") == run_id)  # pushed down into the scan
            if columns:
                frame = frame.select(list(columns))
            return _conform_columns(frame.collect().to_arrow(), columns)
        except FileNotFoundError as exc:
            raise KeyError(str(exc)) from None
        except (pl.exceptions.PolarsError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # e.g. a file of another schema: the file-by-file path conforms or names it
    tables = [_read_one(store, key, columns, run_id) for key in keys]
    return pa.concat_tables(tables) if tables else empty_table(columns)


@cache
def polars_schema() -> Any:
    """The record schema as Polars reads it (a ``polars.Schema``)."""
    import polars as pl

    return pl.from_arrow(RECORD_SCHEMA.empty_table()).schema  # type: ignore[union-attr]


def empty_table(columns: Sequence[str] | None) -> pa.Table:
    table = RECORD_SCHEMA.empty_table()
    return table.select(list(columns)) if columns else table


def read_records(
    store: ObjectStore, keys: Iterable[str], columns: Sequence[str] | None = None
) -> pa.Table:
    """Read raw files into one table in the current record schema (missing files are skipped).

    ``columns`` narrows the result (any record columns, in that order).
    """
    keys = list(keys)
    try:
        return read_files(store, keys, columns)
    except KeyError:
        pass  # some were compacted or deleted since they were listed: read the rest one by one
    tables = []
    for key in keys:
        try:
            tables.append(_read_one(store, key, columns))
        except KeyError:
            continue
    if not tables:
        return empty_table(columns)
    return pa.concat_tables(tables)


def dedup_by_id(table: pa.Table) -> pa.Table:
    """Keep the first row of each ``id``: the last line of defence against a double count."""
    if table.num_rows == 0 or "id" not in table.column_names:
        return table
    if pc.count_distinct(table.column("id")).as_py() == table.num_rows:
        return table
    indexed = table.select(["id"]).append_column("__row", pa.array(range(table.num_rows)))
    first = indexed.group_by("id", use_threads=False).aggregate([("__row", "min")])
    # Original order kept: take the surviving row numbers in ascending order.
    keep = pc.array_sort_indices(first.column("__row_min"))
    return table.take(pc.take(first.column("__row_min"), keep))
