"""Compaction: merge a day's small raw files into one file per ``user=`` partition.

A day of 30,000 one-row files reads 50-100x slower than the same rows in one file; the nightly
flow (and its own deployment) calls ``compact_day`` to fix that. The protocol, per partition:

1. list the partition; read every live file; de-duplicate rows by ``id``;
2. write an *intent* ``_compaction_{token}.json`` naming the merged key and every input;
3. write the merged file ``compacted_{token}.parquet`` (token: digest of the input keys plus a
   random part, so two attempts never share a file);
4. list again: if an input vanished, another compaction took it, so delete our merged file
   (every row is still in an input or in the other compaction's output) and stop;
5. delete the inputs, then the intent.

Readers use ``live_keys``: an intent whose merged file exists hides its inputs, so at every
step each row is visible exactly once. Intents exist only while a compaction runs or after it
died, so in the steady state ``live_keys`` is one listing, with no file read at all (the old
design read every compacted file's Parquet footer on every read; on B2 that was one download
per partition per reader).

A young intent means a compaction is running: other compactions leave that partition alone. An
intent older than ``STALE_INTENT_AFTER`` belongs to a compaction that died; the next compaction
finishes it (its merged file is complete, since puts are atomic) or drops it (no merged file).
New files written during a compaction are not among its inputs, so they survive it.

Each compaction of a day also removes that day's stale leftovers of interrupted writes (a local
``.tmp-*`` file, an unfinished B2 upload) older than ``STALE_INTENT_AFTER``: nobody reads them,
and they may hold a user's rows long after the user is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from tasks.records.io import dedup_by_id, read_files, table_to_parquet
from tasks.records.live import (
    COMPACTED_PREFIX,
    INTENT_PREFIX,
    INTENT_SUFFIX,
    is_intent_key,
    read_intent,
)
from tasks.storage.base import ObjectInfo, ObjectStore, purge_temporaries
from tasks.storage.layout import day_prefix, user_of_key, user_partition

log = logging.getLogger(__name__)

# Long enough that no live compaction of one partition (seconds to minutes) is mistaken for a
# dead one, and no write still under way loses its temp file; short enough that a crash is
# repaired by the next night's run.
STALE_INTENT_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class CompactionResult:
    day: date
    partitions: int  # partitions merged this run
    files_in: int  # files merged into those partitions' new files
    rows: int  # rows in the new files
    recovered: int = 0  # intents of dead compactions finished or dropped
    skipped: int = 0  # partitions left alone: another compaction is running or got there first
    temporaries: int = 0  # stale leftovers of interrupted writes removed


def compact_day(
    store: ObjectStore, day: date, *, stale_after: timedelta = STALE_INTENT_AFTER
) -> CompactionResult:
    """Merge each user partition of ``day`` into one file; idempotent and safe to re-run."""
    temporaries = purge_temporaries(store, day_prefix(day), older_than=stale_after)
    if temporaries:
        log.info("compaction: removed %d stale temporary file(s) of %s", temporaries, day)
    partitions: dict[str, list[ObjectInfo]] = {}
    for obj in store.list(day_prefix(day)):
        if user_of_key(obj.key) is not None:
            partitions.setdefault(user_partition(obj.key), []).append(obj)
    merged = files_in = rows = recovered = skipped = 0
    for part, objs in sorted(partitions.items()):
        outcome = _compact_partition(store, part, objs, stale_after)
        recovered += outcome.recovered
        if outcome.skipped:
            skipped += 1
        elif outcome.files_in:
            merged += 1
            files_in += outcome.files_in
            rows += outcome.rows
    return CompactionResult(day, merged, files_in, rows, recovered, skipped, temporaries)


@dataclass(frozen=True)
class _Outcome:
    files_in: int = 0
    rows: int = 0
    recovered: int = 0
    skipped: bool = False


def _compact_partition(
    store: ObjectStore, part: str, objs: list[ObjectInfo], stale_after: timedelta
) -> _Outcome:
    keys = {o.key for o in objs}
    now = datetime.now(UTC)
    recovered = 0
    for obj in objs:
        if not is_intent_key(obj.key):
            continue
        intent = read_intent(store, obj.key)
        if intent is None:
            keys.discard(obj.key)
            continue
        if now - obj.modified < stale_after:
            # Another compaction is working here; readers are consistent meanwhile.
            log.info("compaction: %s is in progress elsewhere; skipping", part)
            return _Outcome(recovered=recovered, skipped=True)
        if intent.merged in keys:
            # A dead compaction's merged file is complete: finish its deletes.
            for key in intent.inputs:
                if key != intent.merged and key in keys:
                    store.delete(key)
                    keys.discard(key)
        store.delete(obj.key)
        keys.discard(obj.key)
        recovered += 1

    inputs = sorted(k for k in keys if k.endswith(".parquet"))
    if len(inputs) < 2:
        return _Outcome(recovered=recovered)

    try:
        table = read_files(store, inputs)
    except KeyError:
        # Merged or deleted by someone else since we listed: leave the partition to them.
        return _Outcome(recovered=recovered, skipped=True)
    table = dedup_by_id(table).sort_by(
        [("timestamp", "ascending"), ("id", "ascending")]
    )

    # The digest names what was merged; the random suffix makes each attempt's files its own,
    # so a rival that merged the same inputs never shares (and never rolls back) our file.
    digest = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:12]
    digest = f"{digest}-{uuid.uuid4().hex[:8]}"
    merged_key = f"{part}{COMPACTED_PREFIX}{digest}.parquet"
    intent_key = f"{part}{INTENT_PREFIX}{digest}{INTENT_SUFFIX}"
    started = time.monotonic()
    store.put(intent_key, json.dumps({"merged": merged_key, "inputs": inputs}).encode())
    store.put(merged_key, table_to_parquet(table))

    present = {o.key for o in store.list(part)}
    # If an input vanished, someone else merged (or GDPR-removed) it: its rows are in their
    # output or still in our other inputs, so our merged file would only duplicate them. Unless
    # we were so slow that our intent looked dead and a recovery may rely on our merged file.
    lost_race = any(k not in present for k in inputs)
    if lost_race and time.monotonic() - started < stale_after.total_seconds() / 2:
        store.delete(merged_key)
        store.delete(intent_key)
        return _Outcome(recovered=recovered, skipped=True)
    for key in inputs:
        if key != merged_key:
            store.delete(key)
    store.delete(intent_key)
    return _Outcome(files_in=len(inputs), rows=table.num_rows, recovered=recovered)
