"""Compaction: every row exactly once whatever step it dies at, with writers and rivals around."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tasks.errors import StorageError
from tasks.identity import SOURCE_COMMUNITY, SOURCE_SCHEDULED, USER_SCHEDULER
from tasks.records.compaction import compact_day
from tasks.records.io import read_records, write_records
from tasks.records.live import INTENT_PREFIX, is_intent_key, live_keys, read_day
from tasks.storage import LocalStore, ObjectStore
from tasks.storage.layout import day_prefix, user_partition
from tests.support.b2 import make_b2_store
from tests.support.faults import Crash, Interrupting
from tests.support.helpers import record

DAY = date(2026, 11, 1)
ALICE = "a1b2c3d4e5f60718"
NOW = timedelta(0)  # "every intent is stale": the next compaction repairs at once


def _crash() -> None:
    raise Crash


def _write(store: ObjectStore, n: int, user: str = USER_SCHEDULER, minute: int = 0) -> list[str]:
    """``n`` one-row files for ``user`` on ``DAY``; returns the row ids."""
    ids = []
    source = SOURCE_SCHEDULED if user == USER_SCHEDULER else SOURCE_COMMUNITY
    for i in range(n):
        rec = record(
            timestamp=datetime(2026, 11, 1, 6, minute, i, tzinfo=UTC), user_id=user,
            source=source, prompt_id=f"case-{minute}-{i}",
        )
        write_records(store, [rec], user_id=user, source=source)
        ids.append(rec["id"])
    return ids


_TEMPLATE: dict[str, Any] = {}


def _fixture(store: ObjectStore) -> list[str]:
    """Two partitions, each an already-compacted file plus two new one-row files.

    Built once through the real code, then copied object by object into each fresh store: the
    every-step tests need dozens of identical starting points.
    """
    if not _TEMPLATE:
        with tempfile.TemporaryDirectory() as tmp:
            template = LocalStore(tmp)
            ids = _write(template, 4)
            ids += _write(template, 3, ALICE, minute=1)
            compact_day(template, DAY)
            ids += _write(template, 2, minute=2)
            ids += _write(template, 2, ALICE, minute=3)
            _TEMPLATE["ids"] = ids
            _TEMPLATE["objects"] = [(o.key, template.get(o.key)) for o in template.list()]
    for key, data in _TEMPLATE["objects"]:
        store.put(key, data)
    return list(_TEMPLATE["ids"])


def _assert_exactly_once(store: ObjectStore, expected: list[str], *, read: bool = False) -> None:
    # Deliberately no de-duplication here: live_keys alone must give each row once.
    ids = read_records(store, live_keys(store, day_prefix(DAY)), columns=["id"])
    counts = Counter(ids.column("id").to_pylist())
    assert {i for i, c in counts.items() if c > 1} == set()
    assert set(counts) == set(expected)
    if read:  # and the public reader agrees
        assert sorted(read_day(store, DAY).column("id").to_pylist()) == sorted(expected)


def _assert_compact(store: ObjectStore) -> None:
    by_part = Counter(user_partition(o.key) for o in store.list(day_prefix(DAY)))
    assert all(n == 1 for n in by_part.values()), by_part
    assert not any(is_intent_key(o.key) for o in store.list(day_prefix(DAY)))


def _local_stores(tmp_path: Path) -> Callable[[], ObjectStore]:
    counter = iter(range(10_000))
    return lambda: LocalStore(tmp_path / f"s{next(counter)}")


@pytest.fixture(params=["local", "b2"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    if request.param == "local":
        yield _local_stores(tmp_path)
    else:
        yield lambda: make_b2_store()[0]


def _ops_of_clean_run(make_store: Callable[[], ObjectStore]) -> int:
    store = make_store()
    _fixture(store)
    counting = Interrupting(store, -1, _crash)
    compact_day(counting, DAY)
    return counting.ops


def test_compaction_merges_each_partition_into_one_sorted_file(store: LocalStore) -> None:
    ids = _write(store, 6) + _write(store, 3, ALICE)
    result = compact_day(store, DAY)
    assert (result.partitions, result.files_in, result.rows) == (2, 9, 9)
    _assert_compact(store)
    _assert_exactly_once(store, ids)
    merged = [o.key for o in store.list(day_prefix(DAY) + "user=scheduler/")]
    assert merged[0].rsplit("/", 1)[1].startswith("compacted_")
    path = store.local_path(merged[0])
    assert path is not None
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 1
    assert meta.row_group(0).column(0).compression == "ZSTD"
    stamps = pq.read_table(path).column("timestamp").to_pylist()
    assert stamps == sorted(stamps)


def test_compaction_is_idempotent(store: LocalStore) -> None:
    ids = _fixture(store)
    first = compact_day(store, DAY)
    keys = [o.key for o in store.list()]
    second = compact_day(store, DAY)
    assert (first.partitions, first.files_in, first.rows) == (2, 6, 11)
    assert second.partitions == 0 and second.files_in == 0
    assert [o.key for o in store.list()] == keys
    _assert_exactly_once(store, ids)


def test_live_keys_reads_no_file_in_the_steady_state(store: LocalStore) -> None:
    _fixture(store)
    compact_day(store, DAY)
    _write(store, 2, minute=5)  # new files beside a compacted one
    counting = Interrupting(store, -1, _crash)
    gets: list[str] = []
    counting.get = lambda key: gets.append(key) or store.get(key)  # type: ignore[method-assign]
    assert len(live_keys(counting, day_prefix(DAY))) == 4  # 2 compacted + 2 new
    assert gets == []


@pytest.mark.parametrize("after", [False, True], ids=["before-op", "after-op"])
def test_crash_at_every_step_loses_and_duplicates_nothing(
    make_store: Callable[[], ObjectStore], after: bool
) -> None:
    if after and not isinstance(make_store(), LocalStore):
        pytest.skip("B2 runs the before-op crashes only (same steps; keeps the suite fast)")
    total = _ops_of_clean_run(make_store)
    assert total >= 15  # list, then per partition: (reads,) intent, merged, re-list, deletes
    for at in range(total):
        store = make_store()
        ids = _fixture(store)
        with pytest.raises(Crash):
            compact_day(Interrupting(store, at, _crash, after=after), DAY)
        _assert_exactly_once(store, ids, read=True)  # a read in between
        # A retry within the hour leaves a partition with a fresh intent alone...
        compact_day(store, DAY)
        _assert_exactly_once(store, ids)
        # ...and the next night's run finishes the job.
        compact_day(store, DAY, stale_after=NOW)
        _assert_exactly_once(store, ids)
        _assert_compact(store)


def test_files_written_during_compaction_survive_at_every_step(tmp_path: Path) -> None:
    make_store = _local_stores(tmp_path)
    total = _ops_of_clean_run(make_store)
    for at in range(total):
        store = make_store()
        ids = _fixture(store)
        late: list[str] = []

        def submit(store: ObjectStore = store, late: list[str] = late) -> None:
            late.extend(_write(store, 1, minute=30) + _write(store, 1, ALICE, minute=31))

        compact_day(Interrupting(store, at, submit), DAY)
        assert len(late) == 2
        _assert_exactly_once(store, ids + late)
        compact_day(store, DAY)
        _assert_exactly_once(store, ids + late)
        _assert_compact(store)


def test_a_rival_compaction_at_every_step_duplicates_nothing(tmp_path: Path) -> None:
    make_store = _local_stores(tmp_path)
    total = _ops_of_clean_run(make_store)
    for at in range(total):
        store = make_store()
        ids = _fixture(store)

        def rival(store: ObjectStore = store) -> None:
            compact_day(store, DAY)

        compact_day(Interrupting(store, at, rival), DAY)
        _assert_exactly_once(store, ids)
        compact_day(store, DAY, stale_after=NOW)
        _assert_exactly_once(store, ids)
        _assert_compact(store)


def test_threads_compacting_writing_and_reading_at_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    written = _fixture(store)
    lock = threading.Lock()
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        for i in range(40):
            new = _write(store, 1, USER_SCHEDULER if i % 2 else ALICE, minute=10 + i % 40)
            with lock:
                written.extend(new)
        stop.set()

    def compactor() -> None:
        try:
            while not stop.is_set():
                compact_day(store, DAY)
                time.sleep(0.02)
        except Exception as exc:  # reported by the assertion below
            errors.append(f"compactor: {exc!r}")

    def reader() -> None:
        try:
            while not stop.is_set():
                with lock:
                    before = set(written)
                ids = read_day(store, DAY).column("id").to_pylist()
                if len(ids) != len(set(ids)) or not before <= set(ids):
                    errors.append(f"read {len(ids)} rows, {len(before - set(ids))} missing")
        except Exception as exc:
            errors.append(f"reader: {exc!r}")

    threads = [threading.Thread(target=f) for f in (writer, compactor, compactor, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    compact_day(store, DAY, stale_after=NOW)
    _assert_exactly_once(store, written)
    _assert_compact(store)


def test_unreadable_or_foreign_intent_is_a_clear_error(store: LocalStore) -> None:
    _write(store, 2)
    part = day_prefix(DAY) + "user=scheduler/"
    store.put(f"{part}{INTENT_PREFIX}bad.json", b"{not json")
    with pytest.raises(StorageError, match=r"unreadable compaction intent.*_compaction_bad\.json"):
        live_keys(store, day_prefix(DAY))
    store.put(f"{part}{INTENT_PREFIX}bad.json", json.dumps(
        {"merged": f"{part}x.parquet", "inputs": [day_prefix(DAY) + f"user={ALICE}/y.parquet"]}
    ).encode())
    with pytest.raises(StorageError, match="outside its partition"):
        live_keys(store, day_prefix(DAY))
