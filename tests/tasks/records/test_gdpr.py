"""GDPR: delete and anonymize really forget, crash-safely; stats read only the user's own files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from tasks.identity import SOURCE_COMMUNITY, SOURCE_SCHEDULED, USER_ANONYMOUS, USER_SCHEDULER
from tasks.records.compaction import compact_day
from tasks.records.gdpr import anonymize_user, delete_user, user_keys, user_stats
from tasks.records.io import parquet_to_table, read_records, table_to_parquet, write_records
from tasks.records.live import live_keys
from tasks.records.schema import to_table
from tasks.storage import LocalStore, ObjectStore
from tasks.storage.b2 import B2Store
from tasks.storage.layout import RAW, day_prefix, dirty_marker_key, user_day_prefix
from tasks.storage.local import TMP_PREFIX
from tests.support.b2 import make_b2_store
from tests.support.faults import Crash, Interrupting
from tests.support.helpers import record

ALICE = "a1b2c3d4e5f60718"
BOB = "0f1e2d3c4b5a6978"
DAYS = [date(2026, 10, 30), date(2026, 11, 1), date(2026, 11, 2)]


def _submit(
    store: ObjectStore, user: str, day: date, n: int, model: str = "fake/stable"
) -> list[str]:
    ids = []
    for i in range(n):
        rec = record(
            timestamp=datetime(day.year, day.month, day.day, 8, i, tzinfo=UTC),
            user_id=user, source=SOURCE_COMMUNITY, model_id=model, prompt_id=f"p{i}",
            run_id=f"cli-{user}-{i}",  # free text that happens to quote the user id
            metadata_json=json.dumps({"submitted_by": user, "client": "pramana"}),
        )
        write_records(store, [rec], user_id=user, source=SOURCE_COMMUNITY)
        ids.append(rec["id"])
    return ids


def _world(store: ObjectStore) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {ALICE: [], BOB: [], "others": []}
    for k, day in enumerate(DAYS[:2]):
        ids[ALICE] += _submit(store, ALICE, day, 3, model=f"fake/m{k}")
    ids[BOB] += _submit(store, BOB, DAYS[1], 2)
    ids[BOB] += _submit(store, BOB, DAYS[2], 1)
    ids["others"] += _submit(store, USER_ANONYMOUS, DAYS[1], 1)
    rec = record(timestamp=datetime(2026, 11, 1, 6, tzinfo=UTC))
    write_records(store, [rec], user_id=USER_SCHEDULER, source=SOURCE_SCHEDULED)
    ids["others"].append(rec["id"])
    return ids


def _all_rows(store: ObjectStore) -> pa.Table:
    keys = [o.key for o in store.list(RAW + "/") if o.key.endswith(".parquet")]
    return read_records(store, keys)


def _every_file_mentions(store: ObjectStore, needle: str) -> list[str]:
    """Keys of every Parquet object (raw, summaries, anything) whose name or any text cell
    contains ``needle``."""
    hits = []
    for obj in store.list():
        if needle in obj.key:
            hits.append(obj.key)
            continue
        if not obj.key.endswith(".parquet"):
            continue
        table = parquet_to_table(store.get(obj.key))
        meta = table.schema.metadata or {}
        if any(needle.encode() in v for v in meta.values()):
            hits.append(obj.key)
            continue
        for column in table.columns:
            if pa.types.is_string(column.type) and any(
                needle in v for v in column.to_pylist() if v is not None
            ):
                hits.append(obj.key)
                break
    return hits


def _raise() -> None:
    raise Crash


class _DiesAfterMerging(Interrupting):
    """A compaction that dies right after writing ``user``'s merged file (inputs still there)."""

    def __init__(self, inner: ObjectStore, user: str) -> None:
        super().__init__(inner, -1, _raise)
        self.user = user

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)
        if f"/user={self.user}/compacted_" in key:
            raise Crash


@pytest.fixture(params=["local", "b2"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return LocalStore(tmp_path / "data") if request.param == "local" else make_b2_store()[0]


def test_delete_user_removes_every_file_and_marks_days(any_store: ObjectStore) -> None:
    ids = _world(any_store)
    assert delete_user(any_store, ALICE) == 6
    assert user_keys(any_store, ALICE) == []
    assert not any(f"user={ALICE}" in o.key for o in any_store.list())
    remaining = _all_rows(any_store).column("id").to_pylist()
    assert sorted(remaining) == sorted(ids[BOB] + ids["others"])
    assert any_store.exists(dirty_marker_key(DAYS[0]))
    assert any_store.exists(dirty_marker_key(DAYS[1]))
    assert not any_store.exists(dirty_marker_key(DAYS[2]))  # alice had nothing that day
    assert delete_user(any_store, ALICE) == 0


def test_delete_user_also_removes_compaction_leftovers(store: LocalStore) -> None:
    _world(store)
    with pytest.raises(Crash):  # a compaction of alice's day died after writing its merged file
        compact_day(_DiesAfterMerging(store, ALICE), DAYS[1])
    assert any(f"user={ALICE}" in o.key and o.key.endswith(".json") for o in store.list())
    delete_user(store, ALICE)
    assert [o.key for o in store.list() if f"user={ALICE}" in o.key] == []


def test_refuses_bad_or_service_user_ids(store: LocalStore) -> None:
    with pytest.raises(ValueError, match="invalid user_id"):
        delete_user(store, "../../etc")
    with pytest.raises(ValueError, match="invalid user_id"):
        anonymize_user(store, "ALICE")
    with pytest.raises(ValueError, match="cannot be deleted"):
        delete_user(store, USER_ANONYMOUS)
    with pytest.raises(ValueError, match="already anonymous"):
        anonymize_user(store, USER_ANONYMOUS)


def test_anonymize_leaves_no_trace_of_the_id_anywhere(any_store: ObjectStore) -> None:
    ids = _world(any_store)
    assert _every_file_mentions(any_store, ALICE)  # the check can see the id when it is there
    assert anonymize_user(any_store, ALICE) == 6
    assert _every_file_mentions(any_store, ALICE) == []
    rows = _all_rows(any_store)
    assert sorted(rows.column("id").to_pylist()) == sorted(i for v in ids.values() for i in v)
    moved = rows.filter(pa.compute.is_in(rows.column("id"), pa.array(ids[ALICE])))
    assert set(moved.column("user_id").to_pylist()) == {USER_ANONYMOUS}
    assert all(json.loads(m)["submitted_by"] == USER_ANONYMOUS
               for m in moved.column("metadata_json").to_pylist())
    # Bob's rows are untouched.
    bob = rows.filter(pa.compute.is_in(rows.column("id"), pa.array(ids[BOB])))
    assert set(bob.column("user_id").to_pylist()) == {BOB}
    assert any_store.exists(dirty_marker_key(DAYS[0]))
    assert user_stats(any_store, ALICE).count == 0
    assert anonymize_user(any_store, ALICE) == 0


def test_anonymize_after_compaction_and_a_crashed_compaction(store: LocalStore) -> None:
    ids = _world(store)
    compact_day(store, DAYS[0])
    with pytest.raises(Crash):  # merged file written, inputs not yet deleted
        compact_day(_DiesAfterMerging(store, ALICE), DAYS[1])
    anonymize_user(store, ALICE)
    counts = Counter(_all_rows(store).column("id").to_pylist())
    assert {i for i, c in counts.items() if c != 1} == set()
    assert sorted(counts) == sorted(i for v in ids.values() for i in v)
    assert _every_file_mentions(store, ALICE) == []


def test_anonymize_crash_at_every_step_then_rerun(tmp_path: Path) -> None:
    template = LocalStore(tmp_path / "template")
    ids = _world(template)
    objects = [(o.key, template.get(o.key)) for o in template.list()]
    counting = Interrupting(template, -1, _raise, writes_only=True)
    anonymize_user(counting, ALICE)
    assert counting.ops >= 14  # 2 dirty markers, then a put and a delete per file
    for at in range(counting.ops):
        store = LocalStore(tmp_path / f"s{at}")
        for key, data in objects:
            store.put(key, data)
        with pytest.raises(Crash):
            anonymize_user(Interrupting(store, at, _raise, writes_only=True), ALICE)
        anonymize_user(store, ALICE)
        for day in DAYS:
            compact_day(store, day)
        live = [k for d in DAYS for k in live_keys(store, day_prefix(d))]
        counts = Counter(read_records(store, live).column("id").to_pylist())
        assert {i for i, c in counts.items() if c != 1} == set(), at
        assert sorted(counts) == sorted(i for v in ids.values() for i in v), at
        assert _every_file_mentions(store, ALICE) == [], at


def test_user_stats_reads_only_the_users_files(any_store: ObjectStore) -> None:
    _world(any_store)
    reads: list[str] = []
    listed: list[str] = []
    spy = Interrupting(any_store, -1, _raise)
    spy.get = lambda key: reads.append(key) or any_store.get(key)  # type: ignore[method-assign]
    spy.list = (  # type: ignore[method-assign]
        lambda prefix="": listed.append(prefix) or any_store.list(prefix)
    )
    spy.list_folders = any_store.list_folders  # type: ignore[attr-defined]
    spy.local_path = (  # type: ignore[method-assign]  # the local store reads files in place
        lambda key: reads.append(key) or any_store.local_path(key)
    )
    stats = user_stats(spy, ALICE)
    assert stats.count == 6
    assert stats.models_tested == ["fake/m0", "fake/m1"]
    assert stats.last_submission == datetime(2026, 11, 1, 8, 2, tzinfo=UTC)
    assert reads and all(f"/user={ALICE}/" in k for k in reads)
    assert listed and all(p.endswith(f"/user={ALICE}/") for p in listed)
    assert user_stats(any_store, BOB).count == 3
    assert user_stats(any_store, "ffffffffffffffff") == user_stats(any_store, "eeeeeeeeeeeeeeee")
    assert user_stats(any_store, "ffffffffffffffff").count == 0


def test_user_stats_counts_once_during_an_unfinished_compaction(store: LocalStore) -> None:
    _world(store)
    with pytest.raises(Crash):
        compact_day(_DiesAfterMerging(store, ALICE), DAYS[0])
    assert user_stats(store, ALICE).count == 6


# -- leftovers of interrupted writes (issue 16, item 6) ----------------------------------------


def _killed_write(store: ObjectStore, user: str, day: date, n: int = 6) -> bytes:
    """What a write killed halfway leaves in ``user``'s partition of ``day``, holding ``n`` of
    the user's rows: a local temp file named as ``LocalStore.put`` names it, or on B2 an
    unfinished large-file upload with one part. Returns the bytes it holds."""
    rows = [
        record(timestamp=datetime(day.year, day.month, day.day, 9, i, tzinfo=UTC), user_id=user,
               source=SOURCE_COMMUNITY, prompt_id=f"lost-{i}", run_id=f"cli-{user}")
        for i in range(n)
    ]
    data = table_to_parquet(to_table(rows))
    folder = user_day_prefix(day, user)
    if isinstance(store, LocalStore):
        (store.root / folder).mkdir(parents=True, exist_ok=True)
        fd, _ = tempfile.mkstemp(prefix=TMP_PREFIX, dir=store.root / folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    else:
        assert isinstance(store, B2Store)
        api = store.bucket.api
        started = api.services.large_file.start_large_file(
            store.bucket.id_, f"{folder}community_killed.parquet", "b2/x-auto", {})
        api.session.upload_part(started.file_id, 1, len(data), hashlib.sha1(data).hexdigest(),
                                io.BytesIO(data))
    return data


def _leftovers_of(store: ObjectStore, user: str) -> list[str]:
    """Every leftover anywhere in the store that names or holds ``user``'s id."""
    if isinstance(store, LocalStore):
        return [
            str(p.relative_to(store.root)) for p in store.root.rglob("*")
            if user in str(p) or (p.is_file() and user.encode() in p.read_bytes())
        ]
    assert isinstance(store, B2Store)
    return [f.file_name for f in store.bucket.list_unfinished_large_files() if user in f.file_name]


def test_delete_user_removes_leftovers_of_killed_writes(any_store: ObjectStore) -> None:
    ids = _world(any_store)
    _killed_write(any_store, ALICE, DAYS[0])
    _killed_write(any_store, BOB, DAYS[1])  # bob's leftover is not alice's business
    assert _leftovers_of(any_store, ALICE)  # the check sees them when they are there
    assert delete_user(any_store, ALICE) == 6 + 1  # six data files and the leftover
    assert _leftovers_of(any_store, ALICE) == []
    assert _leftovers_of(any_store, BOB)
    remaining = _all_rows(any_store).column("id").to_pylist()
    assert sorted(remaining) == sorted(ids[BOB] + ids["others"])


def test_anonymize_deletes_leftovers_without_copying_them(any_store: ObjectStore) -> None:
    ids = _world(any_store)
    _killed_write(any_store, ALICE, DAYS[1])
    assert anonymize_user(any_store, ALICE) == 6  # the leftover's rows were never stored
    assert _leftovers_of(any_store, ALICE) == []
    assert _every_file_mentions(any_store, ALICE) == []
    assert sorted(_all_rows(any_store).column("id").to_pylist()) == sorted(
        i for v in ids.values() for i in v)


def test_compaction_removes_stale_leftovers_and_spares_a_write_under_way(
    store: LocalStore,
) -> None:
    _world(store)
    _killed_write(store, BOB, DAYS[1])
    stale = next((store.root / user_day_prefix(DAYS[1], BOB)).glob(f"{TMP_PREFIX}*"))
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    _killed_write(store, ALICE, DAYS[1])  # young: may be a write still under way
    young = next((store.root / user_day_prefix(DAYS[1], ALICE)).glob(f"{TMP_PREFIX}*"))
    result = compact_day(store, DAYS[1])
    assert result.temporaries == 1
    assert not stale.exists() and young.exists()
