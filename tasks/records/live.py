"""Which raw files are live, and how to read them while a compaction runs: written once here.

A compaction (``tasks.records.compaction``) writes an *intent* naming a merged file and its
inputs; an intent whose merged file exists hides its inputs, so every row is visible exactly once
at every step. Everything that reads raw rows (the aggregation, GDPR, a run's resume, the submit
client) goes through ``live_keys`` and ``read_live``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pyarrow as pa

from tasks.errors import StorageError
from tasks.records.io import dedup_by_id, empty_table, read_files
from tasks.storage.base import ObjectStore
from tasks.storage.layout import day_prefix, list_days, user_partition

COMPACTED_PREFIX = "compacted_"
INTENT_PREFIX = "_compaction_"
INTENT_SUFFIX = ".json"
_READ_ATTEMPTS = 10
_READ_PAUSE_S = 0.02

@dataclass(frozen=True)
class Intent:
    key: str
    merged: str
    inputs: tuple[str, ...]


def is_intent_key(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.startswith(INTENT_PREFIX) and name.endswith(INTENT_SUFFIX)


def read_intent(store: ObjectStore, key: str) -> Intent | None:
    try:
        data = store.get(key)
    except KeyError:
        return None  # finished since it was listed
    part = user_partition(key)
    try:
        doc = json.loads(data)
        merged, inputs = doc["merged"], doc["inputs"]
        if not isinstance(merged, str) or not all(isinstance(k, str) for k in inputs):
            raise TypeError("keys must be strings")
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"unreadable compaction intent: {exc}", key=key) from exc
    # An intent may only hide files of its own partition: a bad one must not hide other data.
    if any(user_partition(k) != part for k in (merged, *inputs)):
        raise StorageError("compaction intent names files outside its partition", key=key)
    return Intent(key, merged, tuple(inputs))


def _covered(store: ObjectStore, keys: set[str]) -> set[str]:
    """Inputs of intents whose merged file is in ``keys``: their rows are in that file."""
    covered: set[str] = set()
    for key in sorted(keys):
        if is_intent_key(key):
            intent = read_intent(store, key)
            if intent is not None and intent.merged in keys:
                covered.update(k for k in intent.inputs if k != intent.merged)
    return covered


def live_keys(store: ObjectStore, prefix: str) -> list[str]:
    """Raw Parquet keys under ``prefix`` whose rows are not also in a compacted file, sorted.

    One listing; an intent file is read only while a compaction runs or after one died.
    """
    keys = {o.key for o in store.list(prefix)}
    covered = _covered(store, keys)
    return sorted(k for k in keys if k.endswith(".parquet") and k not in covered)


def read_live(
    store: ObjectStore, prefix: str, columns: Sequence[str] | None = None,
    *, run_id: str | None = None,
) -> pa.Table:
    """Every row under a raw ``prefix`` exactly once, even while a compaction is running.

    ``run_id`` keeps only that run's rows (a resume, a submit), filtered while each file is read.

    Reads the live files (``live_keys``), then lists again: if a file it read
    is gone or a new compacted file appeared (a compaction committed meanwhile, and a listing
    taken while files change need not be a snapshot), it starts over, so no row is missed.
    Rows are de-duplicated by ``id``, so none is counted twice. New raw files that arrived
    during the read are not waited for.
    """
    want = list(columns) if columns else None
    if want is not None and "id" not in want:
        want = ["id", *want]
    for attempt in range(_READ_ATTEMPTS):
        if attempt:
            time.sleep(_READ_PAUSE_S * attempt)
        keys = live_keys(store, prefix)
        try:
            table = read_files(store, keys, want, run_id=run_id)
        except KeyError:
            continue  # merged away since listed
        after = set(live_keys(store, prefix))
        appeared = after.difference(keys)
        if not after.issuperset(keys) or any(
            k.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX) for k in appeared
        ):
            continue
        table = dedup_by_id(table)
        return table.select(list(columns)) if columns else table
    raise StorageError(
        f"files kept vanishing while reading {prefix} ({_READ_ATTEMPTS} attempts)", key=prefix
    )


def read_day(store: ObjectStore, day: date) -> pa.Table:
    """Every raw row of one day, all users, each exactly once."""
    return read_live(store, day_prefix(day))


def range_keys(store: ObjectStore, start: date, end: date) -> list[str]:
    """The live raw keys of the days from ``start`` to ``end`` inclusive.

    Lists only the day partitions in range (``layout.list_days`` walks the date folders), never
    the whole history.
    """
    return [k for day in list_days(store, start, end) for k in live_keys(store, day_prefix(day))]


def read_range(
    store: ObjectStore, start: date, end: date, columns: Sequence[str] | None = None
) -> pa.Table:
    """Every raw row of the days from ``start`` to ``end`` inclusive, each exactly once."""
    tables = [read_live(store, day_prefix(d), columns) for d in list_days(store, start, end)]
    return pa.concat_tables(tables) if tables else empty_table(columns)
