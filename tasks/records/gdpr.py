"""GDPR: delete or anonymize everything one user submitted, and per-user stats.

Every operation touches only ``raw/.../user={id}/`` partitions, never other users' files: the
days are found by walking the date folders (``layout.list_days``), then only the user's own
folder of each day is listed. Both write operations mark every affected day dirty
(``layout.dirty_marker_key``) *before* changing anything, so a crash halfway still gets the
summaries rebuilt, and both can simply be run again.

Both also remove what interrupted writes left in the user's partitions and no listing shows (a
local ``.tmp-*`` file from a process killed mid-flush, an unfinished B2 large-file upload):
such leftovers can hold the user's rows. They are never the only copy of a row (a put is atomic
and nothing deletes a source before its copy is complete), so they are deleted, never copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc

from tasks.errors import StorageError
from tasks.identity import USER_ANONYMOUS
from tasks.records.io import dedup_by_id, parquet_to_table, read_records, table_to_parquet
from tasks.records.live import is_intent_key, live_keys
from tasks.records.schema import conform
from tasks.storage.base import ObjectStore, purge_temporaries
from tasks.storage.layout import (
    check_user_id,
    day_of_key,
    dirty_marker_key,
    list_days,
    user_day_prefix,
)

# Deleting while a compaction or a late submission writes into the partition can leave a file
# behind; the operations re-list and go again until the partition is empty, this many times.
_ROUNDS = 5


@dataclass(frozen=True)
class UserStats:
    count: int
    models_tested: list[str]
    last_submission: datetime | None


def _user_objects(store: ObjectStore, user_id: str) -> list[str]:
    """Every object (data files and compaction intents) in the user's partitions."""
    check_user_id(user_id)
    return [
        o.key
        for day in list_days(store)
        for o in store.list(user_day_prefix(day, user_id))
    ]


def _purge_leftovers(store: ObjectStore, user_id: str) -> int:
    """Remove every leftover of an interrupted write in the user's partitions, however young."""
    check_user_id(user_id)
    return sum(
        purge_temporaries(store, user_day_prefix(day, user_id)) for day in list_days(store)
    )


def user_keys(store: ObjectStore, user_id: str) -> list[str]:
    """Every raw Parquet file in the user's partitions."""
    return [k for k in _user_objects(store, user_id) if k.endswith(".parquet")]


def _mark_dirty(store: ObjectStore, keys: list[str]) -> list[date]:
    days = sorted({d for k in keys if (d := day_of_key(k)) is not None})
    for day in days:
        store.put(dirty_marker_key(day), b"")
    return days


def delete_user(store: ObjectStore, user_id: str) -> int:
    """Delete every file under ``user={id}``; return how many data files were deleted (leftovers
    of interrupted writes included)."""
    if user_id == USER_ANONYMOUS:
        raise ValueError("the anonymous partition belongs to no one and cannot be deleted")
    deleted = _purge_leftovers(store, user_id)
    for _ in range(_ROUNDS):
        keys = _user_objects(store, user_id)
        if not keys:
            return deleted
        _mark_dirty(store, keys)
        for key in keys:
            store.delete(key)
        deleted += sum(k.endswith(".parquet") for k in keys)
    if _user_objects(store, user_id):
        raise StorageError(f"files keep appearing under user={user_id}; delete not finished")
    return deleted


def _scrub(table: pa.Table, user_id: str) -> pa.Table:
    """``user_id`` column set to anonymous, and the id removed from every other text column."""
    table = conform(table)
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if field.name == "user_id":
            column = pa.chunked_array([pa.array([USER_ANONYMOUS] * table.num_rows, pa.string())])
        elif pa.types.is_string(field.type):
            # A free-text column (metadata_json, run_id, ...) may quote the id: it goes too.
            column = pc.replace_substring(column, user_id, USER_ANONYMOUS)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)


def anonymize_user(store: ObjectStore, user_id: str) -> int:
    """Move the user's rows to ``user=anonymous`` with ``user_id`` rewritten; return rows moved.

    Each live file is rewritten into the anonymous partition before its original is deleted, so a
    crash leaves at worst a copy that re-running overwrites (same target key), never a loss.
    Files a compaction already merged (covered inputs) are deleted without being copied.
    """
    check_user_id(user_id)
    if user_id == USER_ANONYMOUS:
        raise ValueError("already anonymous")
    _purge_leftovers(store, user_id)
    moved = 0
    for _ in range(_ROUNDS):
        keys = _user_objects(store, user_id)
        if not keys:
            return moved
        _mark_dirty(store, keys)
        user_part = f"/user={user_id}/"
        for day in sorted({d for k in keys if (d := day_of_key(k)) is not None}):
            prefix = user_day_prefix(day, user_id)
            live = set(live_keys(store, prefix))
            here = [k for k in keys if k.startswith(prefix)]
            # Files a compaction already merged go first (their rows are in a live file), then
            # the live files, then compaction intents: a crash at any point leaves every row in
            # exactly one place that the next round finds.
            here.sort(key=lambda k: (is_intent_key(k), k in live, k))
            for key in here:
                if key in live:
                    try:
                        table = _scrub(dedup_by_id(parquet_to_table(store.get(key))), user_id)
                    except KeyError:
                        continue  # merged or deleted since listed: the next round sees it
                    target = key.replace(user_part, f"/user={USER_ANONYMOUS}/", 1)
                    store.put(target, table_to_parquet(table))
                    moved += table.num_rows
                store.delete(key)
    if _user_objects(store, user_id):
        raise StorageError(f"files keep appearing under user={user_id}; anonymize not finished")
    return moved


def user_table(store: ObjectStore, user_id: str) -> pa.Table:
    """Every row the user submitted (live files only, each row once), all columns: the export
    a user asks for to see their own data."""
    check_user_id(user_id)
    keys = [
        k for day in list_days(store) for k in live_keys(store, user_day_prefix(day, user_id))
    ]
    return dedup_by_id(read_records(store, keys))


def user_stats(store: ObjectStore, user_id: str) -> UserStats:
    """Count, models tested and last submission, reading only the user's own files."""
    check_user_id(user_id)
    keys = [
        k for day in list_days(store) for k in live_keys(store, user_day_prefix(day, user_id))
    ]
    table = dedup_by_id(read_records(store, keys, columns=["id", "model_id", "timestamp"]))
    if table.num_rows == 0:
        return UserStats(0, [], None)
    models = sorted(pc.unique(table.column("model_id")).to_pylist())
    last = pc.max(table.column("timestamp")).as_py()
    return UserStats(table.num_rows, models, last)
