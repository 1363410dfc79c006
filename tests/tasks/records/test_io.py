"""Parquet I/O: round trips, range listing that touches only partitions in range, safe reads."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.errors import StorageError
from tasks.identity import SOURCE_SCHEDULED, USER_SCHEDULER
from tasks.records.compaction import compact_day
from tasks.records.io import (
    ROW_GROUP_SIZE,
    dedup_by_id,
    read_records,
    row_group_rows,
    table_to_parquet,
    write_records,
)
from tasks.records.live import range_keys, read_day, read_live, read_range
from tasks.records.schema import to_table
from tasks.storage import LocalStore, ObjectInfo, ObjectStore
from tasks.storage.layout import day_prefix, list_days
from tests.support.faults import Interrupting
from tests.support.helpers import record


def _day_rows(store: ObjectStore, days: list[date], per_day: int = 2) -> dict[date, list[str]]:
    ids: dict[date, list[str]] = {}
    for day in days:
        recs = [record(timestamp=datetime(day.year, day.month, day.day, 9, i, tzinfo=UTC),
                       prompt_id=f"p{i}") for i in range(per_day)]
        for rec in recs:
            write_records(store, [rec], user_id=USER_SCHEDULER, source=SOURCE_SCHEDULED)
        ids[day] = [r["id"] for r in recs]
    return ids


class _Spy:
    """Records which prefixes a store is asked to list (files and folders)."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.file_lists: list[str] = []
        self.folder_lists: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        self.file_lists.append(prefix)
        return self.inner.list(prefix)

    def list_folders(self, prefix: str = "") -> list[str]:
        self.folder_lists.append(prefix)
        return self.inner.list_folders(prefix)


DAYS = [date(2025, 12, 31), date(2026, 1, 5), date(2026, 10, 30), date(2026, 11, 1),
        date(2026, 11, 2), date(2026, 11, 20)]


def test_write_then_read_round_trips_in_the_record_schema(store: LocalStore) -> None:
    recs = [record(prompt_id="a"), record(prompt_id="b")]
    keys = write_records(store, recs, user_id=USER_SCHEDULER, source=SOURCE_SCHEDULED)
    assert len(keys) == 1 and keys[0].startswith("raw/year=2026/month=11/day=01/user=scheduler/")
    table = read_records(store, keys)
    assert table.schema.equals(to_table([]).schema)
    assert sorted(table.column("prompt_id").to_pylist()) == ["a", "b"]
    assert read_records(store, keys, columns=["prompt_id"]).column_names == ["prompt_id"]
    assert read_records(store, ["raw/missing.parquet"]).num_rows == 0


def test_write_refuses_rows_that_disagree_with_their_partition(store: LocalStore) -> None:
    with pytest.raises(ValueError, match="expected 'scheduler'/'scheduled'"):
        write_records(store, [record(user_id="anonymous")], user_id=USER_SCHEDULER,
                      source=SOURCE_SCHEDULED)


def test_list_days_walks_only_the_folders_in_range(store: LocalStore) -> None:
    _day_rows(store, DAYS, per_day=1)
    spy = _Spy(store)
    assert list_days(spy, date(2026, 11, 1), date(2026, 11, 2)) == [DAYS[3], DAYS[4]]  # type: ignore[arg-type]
    assert spy.file_lists == []  # not one file listed: folders only
    assert spy.folder_lists == [
        "raw/", "raw/year=2026/", "raw/year=2026/month=11/",
    ]
    assert list_days(store) == DAYS
    assert list_days(store, date(2026, 1, 1), None) == DAYS[1:]
    assert list_days(store, None, date(2025, 12, 31)) == DAYS[:1]


def test_range_reads_touch_only_partitions_in_range(store: LocalStore) -> None:
    ids = _day_rows(store, DAYS)
    spy = _Spy(store)
    keys = range_keys(spy, date(2026, 10, 30), date(2026, 11, 2))  # type: ignore[arg-type]
    assert len(keys) == 6
    assert spy.file_lists == [day_prefix(d) for d in DAYS[2:5]]
    table = read_range(store, date(2026, 10, 30), date(2026, 11, 2), columns=["id", "day"])
    assert sorted(table.column("id").to_pylist()) == sorted(i for d in DAYS[2:5] for i in ids[d])
    assert table.column_names == ["id", "day"]
    assert read_range(store, date(2030, 1, 1), date(2030, 2, 1)).num_rows == 0


def test_read_day_relists_when_a_compaction_moves_files_mid_read(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    ids = _day_rows(store, [DAYS[3]], per_day=5)[DAYS[3]]

    def compact() -> None:
        compact_day(store, DAYS[3])

    # Op 0 is live_keys' listing; the compaction runs just after it, before the first read.
    racing = Interrupting(store, 0, compact, after=True)
    table = read_day(racing, DAYS[3])
    assert sorted(table.column("id").to_pylist()) == sorted(ids)
    assert racing.ops >= 3  # listed, found files gone, listed again (and confirmed)


def test_read_live_gives_up_clearly_if_files_keep_vanishing(tmp_path: Path) -> None:
    class Vanishing(LocalStore):
        def get(self, key: str) -> bytes:
            raise KeyError(key)

        def local_path(self, key: str) -> Path | None:
            return None

    store = Vanishing(tmp_path / "data")
    _day_rows(store, [DAYS[3]])
    with pytest.raises(StorageError, match="kept vanishing"):
        read_live(store, day_prefix(DAYS[3]))


class _Remote(LocalStore):
    """A store without local paths: reads go file by file, as on B2."""

    def local_path(self, key: str) -> Path | None:
        return None


@pytest.mark.parametrize("kind", [LocalStore, _Remote])
def test_read_live_can_keep_one_runs_rows(tmp_path: Path, kind: type[LocalStore]) -> None:
    store = kind(tmp_path / "data")
    rows = [record(prompt_id=f"p{i}", run_id="mine" if i % 2 else "other") for i in range(6)]
    for part in (rows[:3], rows[3:]):
        write_records(store, part, user_id=USER_SCHEDULER, source=SOURCE_SCHEDULED)
    table = read_live(store, day_prefix(DAYS[3]), run_id="mine")
    assert sorted(table.column("prompt_id").to_pylist()) == ["p1", "p3", "p5"]
    assert table.schema == to_table(rows).schema
    narrow = read_live(store, day_prefix(DAYS[3]), ["prompt_id"], run_id="mine")
    assert narrow.column_names == ["prompt_id"] and narrow.num_rows == 3
    assert read_live(store, day_prefix(DAYS[3]), run_id="nobody").num_rows == 0


def test_unreadable_file_is_an_error_naming_it(store: LocalStore) -> None:
    store.put(day_prefix(DAYS[3]) + "user=scheduler/broken.parquet", b"not parquet at all")
    with pytest.raises(StorageError, match=r"not a readable record file.*broken\.parquet"):
        read_day(store, DAYS[3])


def test_dedup_by_id_keeps_first_occurrence_in_order() -> None:
    table = pa.table({"id": ["a", "b", "a", "c", "b"], "v": [1, 2, 3, 4, 5]})
    assert dedup_by_id(table).to_pydict() == {"id": ["a", "b", "c"], "v": [1, 2, 4]}
    assert dedup_by_id(table.slice(0, 0)).num_rows == 0


def test_row_groups_are_sized_by_bytes_for_long_outputs(tmp_path: Path) -> None:
    short = to_table([record(output="ok")] * 10)
    assert row_group_rows(short) == ROW_GROUP_SIZE
    # 5000 rows of ~2 KB outputs against a 4 MB target: ~2000 rows a group, 3 groups.
    long = to_table([record(output="x" * 2000)] * 5000)
    rows = row_group_rows(long, target_bytes=4 * 1024 * 1024)
    assert 1500 < rows < 2100
    path = tmp_path / "long.parquet"
    path.write_bytes(table_to_parquet(long, row_group_size=rows))
    assert pq.ParquetFile(path).metadata.num_row_groups == 3


def test_many_files_read_in_one_scan_tolerate_older_schemas(store: LocalStore) -> None:
    ids = _day_rows(store, [DAYS[3]], per_day=3)[DAYS[3]]
    keys = [o.key for o in store.list(day_prefix(DAYS[3]))]
    # A file from an older schema version: two columns it did not have yet.
    old = to_table([record(prompt_id="old")]).drop_columns(["output_len", "category"])
    store.put(day_prefix(DAYS[3]) + "user=scheduler/scheduled_old.parquet", table_to_parquet(old))
    table = read_day(store, DAYS[3])
    assert table.schema.equals(to_table([]).schema)
    assert sorted(table.column("id").to_pylist()) == sorted([*ids, old.column("id")[0].as_py()])
    assert table.column("output_len").null_count == 1
    # A broken file among many is still reported by name.
    store.put(keys[0], b"garbage")
    with pytest.raises(StorageError, match=keys[0].rsplit("/", 1)[1]):
        read_day(store, DAYS[3])
