"""GDPR: delete or anonymize everything one user submitted, and per-user stats.

Every operation touches only ``raw/.../user={id}/`` partitions, never other users' files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc

from tasks.records_io import parquet_to_table, read_records, table_to_parquet
from tasks.schema import USER_ANONYMOUS, conform
from tasks.storage.base import ObjectStore
from tasks.storage.layout import RAW, check_user_id, day_of_key, dirty_marker_key, user_of_key


@dataclass(frozen=True)
class UserStats:
    count: int
    models_tested: list[str]
    last_submission: datetime | None


def user_keys(store: ObjectStore, user_id: str) -> list[str]:
    """Every raw file in the user's partitions."""
    check_user_id(user_id)
    return [
        o.key for o in store.list(RAW + "/")
        if o.key.endswith(".parquet") and user_of_key(o.key) == user_id
    ]


def _mark_dirty(store: ObjectStore, keys: list[str]) -> list[date]:
    days = sorted({d for k in keys if (d := day_of_key(k)) is not None})
    for day in days:
        store.put(dirty_marker_key(day), b"")
    return days


def delete_user(store: ObjectStore, user_id: str) -> int:
    """Delete every file under ``user={id}``; return how many files were deleted."""
    if user_id == USER_ANONYMOUS:
        raise ValueError("the anonymous partition belongs to no one and cannot be deleted")
    keys = user_keys(store, user_id)
    _mark_dirty(store, keys)
    for key in keys:
        store.delete(key)
    return len(keys)


def anonymize_user(store: ObjectStore, user_id: str) -> int:
    """Move the user's rows to ``user=anonymous`` with ``user_id`` rewritten; return rows moved.

    Each file is rewritten into the anonymous partition before its original is deleted, so a
    crash leaves at worst a duplicate that re-running removes (same target key), never a loss.
    """
    if user_id == USER_ANONYMOUS:
        raise ValueError("already anonymous")
    keys = user_keys(store, user_id)
    _mark_dirty(store, keys)
    moved = 0
    for key in keys:
        try:
            table = conform(parquet_to_table(store.get(key)))
        except KeyError:
            continue
        table = table.set_column(
            table.schema.get_field_index("user_id"), "user_id",
            pa.array([USER_ANONYMOUS] * table.num_rows, pa.string()),
        )
        target = key.replace(f"/user={user_id}/", f"/user={USER_ANONYMOUS}/", 1)
        store.put(target, table_to_parquet(table))
        store.delete(key)
        moved += table.num_rows
    return moved


def user_stats(store: ObjectStore, user_id: str) -> UserStats:
    """Count, models tested and last submission, reading only the user's own files."""
    table = read_records(store, user_keys(store, user_id))
    if table.num_rows == 0:
        return UserStats(0, [], None)
    models = sorted(pc.unique(table.column("model_id")).to_pylist())
    last = pc.max(table.column("timestamp")).as_py()
    return UserStats(table.num_rows, models, last)
