"""The durable spool: group commit under concurrency, restart, storage outages, crashes mid-flush,
the background flusher, bounded dedupe keys, and several processes sharing one spool."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api.flusher import SpoolFlusher
from api.spool import Outcome, Spool, SpoolEntry
from tasks.errors import SpoolError, StorageError
from tasks.identity import SOURCE_COMMUNITY
from tasks.records.io import parquet_to_table
from tasks.records.schema import make_record
from tasks.storage.local import LocalStore
from tests.support.helpers import DelegatingStore

ROOT = Path(__file__).resolve().parents[2]


class FlakyStore(DelegatingStore):
    """A real LocalStore whose ``put`` fails while ``down`` is set, or after ``fail_after`` puts
    (a process dying mid-flush looks the same to the spool: some files written, no delete)."""

    def __init__(self, inner: LocalStore) -> None:
        super().__init__(inner)
        self.down = False
        self.fail_after: int | None = None
        self.puts = 0

    def put(self, key: str, data: bytes) -> None:
        if self.down or (self.fail_after is not None and self.puts >= self.fail_after):
            raise StorageError("simulated outage", key=key)
        self.puts += 1
        self.inner.put(key, data)

    def describe(self) -> str:
        return "flaky " + self.inner.describe()


def entry(i: int, user: str = "anonymous", day: int = 20) -> SpoolEntry:
    rec = make_record(
        timestamp=datetime(2026, 11, day, 10, 0, i % 60, tzinfo=UTC), user_id=user,
        model_id="fake/stable", prompt_id=f"p{i}", output=f"out {i}", run_id="community",
        source=SOURCE_COMMUNITY, sample_idx=0,
    )
    # A digest, as api/submissions.py makes it: a key never holds the user id in clear.
    return SpoolEntry(hashlib.sha256(f"{user}|{i}".encode()).hexdigest(), rec)


def stored_ids(store: LocalStore) -> Counter[str]:
    ids: Counter[str] = Counter()
    for info in store.list("raw/"):
        ids.update(parquet_to_table(store.get(info.key)).column("id").to_pylist())
    return ids


@pytest.fixture
def spool(tmp_path: Path) -> Any:
    s = Spool(tmp_path / "spool")
    yield s
    s.close()


def test_group_commit_under_concurrency(spool: Spool) -> None:
    outcomes: list[Any] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(25):
            out = spool.append([entry(n * 100 + i), entry(n * 100 + i)])  # 2nd is a duplicate
            with lock:
                outcomes.extend(out)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(o.status for o in outcomes) == {"accepted": 400, "duplicate": 400}
    assert spool.pending_count() == 400


def test_acknowledged_rows_survive_a_reopen(tmp_path: Path) -> None:
    first = Spool(tmp_path / "s")
    accepted = first.append([entry(i) for i in range(10)])
    # No close(): as if the process died right after acknowledging.
    second = Spool(tmp_path / "s")
    assert second.pending_count() == 10
    assert {r["id"] for r in second.pending_records()} == {o.id for o in accepted}
    assert second.append([entry(3)])[0].status == "duplicate"
    second.close()
    first.close()


def test_outage_delays_but_loses_nothing(spool: Spool, store: LocalStore) -> None:
    flaky = FlakyStore(store)
    acked = {o.id for o in spool.append([entry(i, day=20 + i % 3) for i in range(30)])}
    flaky.down = True
    with pytest.raises(StorageError):
        spool.flush(flaky)
    assert spool.pending_count() == 30
    acked |= {o.id for o in spool.append([entry(i) for i in range(30, 40)])}
    flaky.down = False
    assert spool.flush(flaky) == 40
    assert stored_ids(store) == Counter(dict.fromkeys(acked, 1))
    assert spool.pending_count() == 0
    # The days written are marked for the nightly re-aggregation (late submissions).
    assert [o.key for o in store.list("state/dirty/")] == [
        "state/dirty/2026-11-20", "state/dirty/2026-11-21", "state/dirty/2026-11-22"]


def test_crash_mid_flush_rewrites_the_same_files(spool: Spool, store: LocalStore) -> None:
    flaky = FlakyStore(store)
    # Three partitions (days) in one batch; "die" after the first file is written.
    acked = {o.id for o in spool.append([entry(i, day=20 + i % 3) for i in range(12)])}
    flaky.fail_after = 1
    with pytest.raises(StorageError):
        spool.flush(flaky)
    partial = [o.key for o in store.list("raw/")]
    assert len(partial) == 1
    flaky.fail_after = None
    spool.flush(flaky)
    keys = [o.key for o in store.list("raw/")]
    assert len(keys) == 3 and partial[0] in keys  # same key overwritten, not a second file
    assert stored_ids(store) == Counter(dict.fromkeys(acked, 1))


def test_flush_batches_by_size(spool: Spool, store: LocalStore) -> None:
    spool.append([entry(i) for i in range(25)])
    assert spool.flush(store, batch_rows=10) == 25
    assert len(store.list("raw/")) == 3  # 10 + 10 + 5, one file per batch
    assert sum(stored_ids(store).values()) == 25


def test_flusher_replays_on_start_and_retries_an_outage(tmp_path: Path, store: LocalStore) -> None:
    spool = Spool(tmp_path / "s")
    acked = {o.id for o in spool.append([entry(i) for i in range(5)])}
    flaky = FlakyStore(store)
    flaky.down = True
    flusher = SpoolFlusher(spool, flaky, flush_rows=1000, flush_seconds=0.05, max_backoff=0.2)
    flusher.start()
    deadline = time.monotonic() + 5
    while flusher.last_error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert flusher.last_error is not None and "simulated outage" in flusher.last_error
    assert spool.pending_count() == 5
    flaky.down = False
    while spool.pending_count() and time.monotonic() < deadline:
        time.sleep(0.02)
    flusher.stop()
    assert stored_ids(store) == Counter(dict.fromkeys(acked, 1))
    spool.close()


def test_stop_with_storage_down_keeps_rows_for_next_start(
    tmp_path: Path, store: LocalStore
) -> None:
    spool = Spool(tmp_path / "s")
    spool.append([entry(i) for i in range(3)])
    flaky = FlakyStore(store)
    flaky.down = True
    flusher = SpoolFlusher(spool, flaky, flush_seconds=3600)
    flusher.start()
    flusher.stop()
    spool.close()
    reopened = Spool(tmp_path / "s")
    assert reopened.pending_count() == 3
    assert reopened.flush(store) == 3
    reopened.close()


def test_forget_user_drops_pending_rows_and_dedupe_keys(spool: Spool, store: LocalStore) -> None:
    user = "0123456789abcdef"
    spool.append([entry(i, user=user) for i in range(4)] + [entry(9)])
    assert spool.pending_stats(user).count == 4
    assert spool.forget_user(user) == 4
    assert spool.pending_stats(user).count == 0
    assert spool.append([entry(0, user=user)])[0].status == "accepted"  # key forgotten too
    spool.flush(store)
    assert sum(stored_ids(store).values()) == 2


def test_closed_spool_refuses(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s")
    s.close()
    with pytest.raises(SpoolError):
        s.append([entry(1)])


def test_a_cancelled_submission_does_not_stop_the_writer(spool: Spool) -> None:
    # A submission whose request was cancelled while it waited in the queue (client gone).
    cancelled: Future[list[Outcome]] = Future()
    assert cancelled.cancel()
    spool._queue.put(([entry(1)], cancelled))
    assert spool.append([entry(2)])[0].status == "accepted"
    assert [r["prompt_id"] for r in spool.pending_records()] == ["p2"]


def _spool_bytes(folder: Path, needle: bytes) -> dict[str, int]:
    """How often ``needle`` occurs in each file of the spool folder (db, -wal, -shm)."""
    return {f.name: f.read_bytes().count(needle) for f in sorted(folder.iterdir()) if f.is_file()}


def test_forget_user_leaves_no_copy_in_the_database_or_its_log(
    spool: Spool, store: LocalStore
) -> None:
    user, other = "0123456789abcdef", "fedcba9876543210"
    for i in range(0, 600, 2):  # many commits: the log holds many page images with the id
        spool.append([entry(i, user=user), entry(i + 1, user=other)])
    spool.flush(store, batch_rows=100)  # flushed rows were deleted from the db: free pages
    for i in range(600, 800, 2):
        spool.append([entry(i, user=user), entry(i + 1, user=other)])
    before = _spool_bytes(spool.directory, user.encode())
    assert before["submissions.sqlite3-wal"] > 1000  # the issue saw 1,858 copies
    assert spool.forget_user(user) == 100
    after = _spool_bytes(spool.directory, user.encode())
    assert set(after.values()) == {0}, after
    assert (spool.directory / "submissions.sqlite3-wal").stat().st_size == 0
    # The other user's rows are intact and still flush.
    assert spool.pending_count() == 100
    assert spool.flush(store) == 100


def test_a_full_spool_reports_the_real_error_and_loses_nothing_acknowledged(
    tmp_path: Path, store: LocalStore
) -> None:
    # max_bytes is SQLite's max_page_count: past it SQLite raises SQLITE_FULL, as on a full disk,
    # and rolls the transaction back itself; a second ROLLBACK used to hide the cause.
    spool = Spool(tmp_path / "s", max_bytes=96 * 1024)
    acked = {o.id for o in spool.append([entry(i) for i in range(5)])}
    big = [SpoolEntry(f"big-{i}", {**entry(100 + i).record, "output": "x" * 20_000})
           for i in range(10)]
    with pytest.raises(SpoolError) as err:
        spool.append(big)
    assert "database or disk is full" in str(err.value)
    assert "cannot rollback" not in str(err.value)
    assert str(tmp_path) not in str(err.value)  # the client's message holds no server path
    assert spool.last_write_error is not None and "full" in spool.last_write_error
    # Filled up to the last page by small submissions: the health probe fails the same way.
    i = 1000
    while True:
        try:
            acked |= {o.id for o in spool.append([entry(i)])}
        except SpoolError as exc:
            assert "database or disk is full" in str(exc)
            break
        i += 1
    with pytest.raises(SpoolError, match="database or disk is full"):
        spool.probe()
    # Nothing of a failed group was kept (not even its dedupe keys), nothing acknowledged lost.
    assert spool.pending_count() == len(acked)
    assert spool.flush(store) == len(acked)
    assert stored_ids(store) == Counter(dict.fromkeys(acked, 1))
    # The flush freed the pending rows' pages: writes fit again and clear the error.
    assert spool.append(big[:1])[0].status == "accepted"
    assert spool.last_write_error is None
    spool.probe()
    spool.close()


# --- bounded dedupe memory and several processes (issue 14) --------------------------------------

DAY_S = 86400


def _age_keys(spool: Spool, keys: list[str], seconds: float) -> None:
    """Make keys look accepted ``seconds`` earlier (another connection, as an operator's would)."""
    with sqlite3.connect(spool.path) as conn:
        conn.executemany("UPDATE seen SET accepted = accepted - ? WHERE dedupe_key = ?",
                         [(int(seconds), k) for k in keys])


def test_prune_forgets_keys_by_age_then_the_oldest_beyond_the_cap(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", dedupe_keep_seconds=30 * DAY_S, dedupe_max_keys=6)
    spool.append([entry(i) for i in range(10)])
    old = [entry(i).dedupe_key for i in range(3)]
    _age_keys(spool, old, 31 * DAY_S)  # older than the 30 days kept
    _age_keys(spool, [entry(3).dedupe_key], 29 * DAY_S)  # within them, but the oldest left
    assert spool.seen_count() == 10
    # Three by age, then one more to get down to the cap: the oldest of the rest (entry 3).
    assert spool.prune_seen() == 4
    assert spool.seen_count() == 6
    outcomes = spool.append([entry(i) for i in range(10)])
    assert [o.status for o in outcomes] == ["accepted"] * 4 + ["duplicate"] * 6
    assert spool.prune_seen() == 4  # the re-accepted keys pushed the oldest over the cap
    assert spool.prune_seen() == 0
    spool.close()


def test_the_writer_prunes_as_keys_arrive(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", dedupe_max_keys=100, prune_every_keys=50)
    for start in range(0, 1000, 25):
        spool.append([entry(i) for i in range(start, start + 25)])
    # The cap is overshot by at most the keys accepted between two prunes.
    assert spool.seen_count() <= 100 + 50
    assert spool.pending_count() == 1000  # only dedupe keys are pruned, never pending rows
    spool.close()


def test_a_spool_from_before_pruning_keeps_its_keys_a_full_period(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    with sqlite3.connect(folder / "submissions.sqlite3") as conn:  # the previous schema
        conn.execute("CREATE TABLE seen (dedupe_key TEXT PRIMARY KEY, id TEXT NOT NULL, "
                     "output_hash TEXT NOT NULL, user_id TEXT NOT NULL) WITHOUT ROWID")
        conn.execute("INSERT INTO seen VALUES (?, 'first-id', 'sha256:x', 'anonymous')",
                     (entry(1).dedupe_key,))
    spool = Spool(folder, dedupe_keep_seconds=DAY_S)
    assert spool.prune_seen() == 0  # counted as accepted when the column was added
    out = spool.append([entry(1), entry(2)])
    assert (out[0].status, out[0].id) == ("duplicate", "first-id")
    assert out[1].status == "accepted"
    assert spool.prune_seen(now=time.time() + 2 * DAY_S) == 2
    spool.close()


_HOLD_LOCK = """
import sys, time
from api.spool import Spool
spool = Spool(sys.argv[1])
with spool.exclusive():
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""

_APPEND_AND_FLUSH = """
import json, sys
from datetime import UTC, datetime
from api.spool import Spool, SpoolEntry
from tasks.identity import SOURCE_COMMUNITY
from tasks.records.schema import make_record
from tasks.storage.local import LocalStore
spool, store, name = Spool(sys.argv[1]), LocalStore(sys.argv[2]), sys.argv[3]
acked = []
for n in range(40):
    entries = [SpoolEntry(f"{name}-{n}-{i}", make_record(
        timestamp=datetime(2026, 11, 20, 10, tzinfo=UTC), user_id="anonymous",
        model_id="fake/stable", prompt_id=f"p{i}", output=f"{name} {n} {i}",
        run_id="community", source=SOURCE_COMMUNITY, sample_idx=0)) for i in range(10)]
    acked += [o.id for o in spool.append(entries)]
    spool.flush(store, batch_rows=7)
spool.flush(store)
spool.close()
print(json.dumps(acked))
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_gdpr_operations_wait_for_another_process_holding_the_spool(tmp_path: Path) -> None:
    """A flush in another API process holds the spool's lock file: a delete here must not drop
    the user's rows while that process is writing them to the store."""
    spool = Spool(tmp_path / "s")
    user = "0123456789abcdef"
    spool.append([entry(i, user=user) for i in range(3)])
    holder = _python(_HOLD_LOCK, str(tmp_path / "s"), "1.5")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        assert spool.forget_user(user) == 3
        assert time.monotonic() - start >= 1.0  # waited for the other process to let go
    finally:
        holder.wait(30)
    spool.close()


def test_two_processes_flushing_one_spool_store_every_row_once(
    tmp_path: Path, store: LocalStore
) -> None:
    """``plumbline api --workers 2`` runs a flusher in each process: they take turns."""
    procs = [_python(_APPEND_AND_FLUSH, str(tmp_path / "s"), str(store.root), name)
             for name in ("a", "b")]
    acked: list[str] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        acked += json.loads(out)
    assert len(acked) == 800
    assert stored_ids(store) == Counter(dict.fromkeys(acked, 1))
    left = Spool(tmp_path / "s")
    assert left.pending_count() == 0
    left.close()
