"""Compaction: merge a day's small raw files into one file per ``user=`` partition.

Crash-safe by construction: the merged file is written first under a name that records which
inputs it holds; the inputs are deleted only after it is durable. A reader (or the next
compaction) that finds both a merged file and some of its inputs skips the inputs the merged
file already covers, so a row is never lost and never counted twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date

from tasks.records_io import parquet_to_table, read_records, table_to_parquet
from tasks.schema import conform
from tasks.storage.base import ObjectStore
from tasks.storage.layout import day_prefix, user_of_key

COMPACTED_PREFIX = "compacted_"
MANIFEST_KEY = "plumbline.compacted_from"


@dataclass(frozen=True)
class CompactionResult:
    day: date
    partitions: int
    files_in: int
    rows: int


def _covered_by_compacted(store: ObjectStore, keys: list[str]) -> set[str]:
    """Input keys that a compacted file in the same listing already contains."""
    covered: set[str] = set()
    for key in keys:
        if key.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX):
            try:
                meta = parquet_to_table(store.get(key)).schema.metadata or {}
            except KeyError:
                continue
            covered.update(json.loads(meta.get(MANIFEST_KEY.encode(), b"[]")))
    return covered


def live_keys(store: ObjectStore, prefix: str) -> list[str]:
    """Raw Parquet keys under ``prefix`` whose rows are not also in a compacted file."""
    keys = [o.key for o in store.list(prefix) if o.key.endswith(".parquet")]
    covered = _covered_by_compacted(store, keys)
    return [k for k in keys if k not in covered]


def compact_day(store: ObjectStore, day: date) -> CompactionResult:
    """Merge each user partition of ``day`` into one file; idempotent and safe to re-run."""
    prefix = day_prefix(day)
    keys = live_keys(store, prefix)
    by_user: dict[str, list[str]] = {}
    for key in keys:
        user = user_of_key(key)
        if user is not None:
            by_user.setdefault(user, []).append(key)
    files_in = rows = partitions = 0
    for user, user_keys in sorted(by_user.items()):
        if len(user_keys) < 2:
            continue
        table = read_records(store, user_keys).sort_by([("timestamp", "ascending"),
                                                         ("id", "ascending")])
        # Inputs that are themselves compacted files carry their own manifests forward.
        sources = sorted(set(user_keys) | _covered_by_compacted(store, user_keys))
        table = conform(table).replace_schema_metadata(
            {**(table.schema.metadata or {}), MANIFEST_KEY: json.dumps(sources)}
        )
        digest = hashlib.sha256("\n".join(sources).encode()).hexdigest()[:12]
        merged = f"{prefix}user={user}/{COMPACTED_PREFIX}{digest}.parquet"
        store.put(merged, table_to_parquet(table))
        for key in user_keys:
            if key != merged:
                store.delete(key)
        files_in += len(user_keys)
        rows += table.num_rows
        partitions += 1
    return CompactionResult(day, partitions, files_in, rows)

