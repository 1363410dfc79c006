"""The durable submission spool: acknowledged community results wait here until they are Parquet.

Longer than 400 lines because it is one SQLite connection shared by the writer thread (commits,
pruning), the flush and the GDPR operations, with the lock file other processes share: their
locking and transactions must be read in one place.

A submission is acknowledged only after its row is committed to a local SQLite database in WAL
mode with ``synchronous=FULL`` (the commit fsyncs the log). Many concurrent submissions share one
commit (group commit: a single writer thread drains a queue and commits everything waiting in one
transaction), so the fsync cost is paid per group, not per request.

A flush moves pending rows to the object store in batches. A batch is first *claimed* (its id and
file names are fixed and committed), then its files are written, then its rows are deleted. A
crash or a storage outage in between leaves the claim in place; the next flush (at the latest on
the next start) writes the same batch to the same keys again, so it overwrites rather than
duplicates. Nothing acknowledged is ever dropped by a failed flush.

The ``seen`` table remembers accepted submissions' dedupe keys, so a resubmission is answered
``duplicate`` even after its row left the spool. It is bounded: keys older than
``dedupe_keep_seconds`` are forgotten, and beyond ``dedupe_max_keys`` the oldest go first (the
writer thread prunes in short transactions, at most every ``PRUNE_INTERVAL_S`` or after
``PRUNE_EVERY_KEYS`` new keys).

Several processes may share one spool (``plumbline api --workers N``): SQLite serializes their
commits, so the dedupe check of one process sees every other's keys, and flushes and GDPR
operations hold a lock file (``spool.lock``, ``flock``) besides the in-process lock, so two
processes never flush at once and no process flushes while another forgets a user.

GDPR: the database runs with ``secure_delete`` (a deleted row's bytes are overwritten with zeros,
not left in a free page), and forgetting a user ends with ``wal_checkpoint(TRUNCATE)``, so neither
the database file nor its write-ahead log still holds the user's id or outputs afterwards.

A failed transaction is rolled back only if SQLite has not already done so itself (it does after
``SQLITE_FULL`` and I/O errors), so the error a caller sees is the real cause ("database or disk
is full"), never "cannot rollback - no transaction is active".
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tasks.errors import SpoolError
from tasks.identity import SOURCE_COMMUNITY
from tasks.records.io import table_to_parquet
from tasks.records.schema import to_table
from tasks.storage.base import ObjectStore
from tasks.storage.layout import dirty_marker_key, user_day_prefix

log = logging.getLogger(__name__)

DB_NAME = "submissions.sqlite3"
LOCK_NAME = "spool.lock"
# How many queued submissions one commit may carry: bounds the transaction, not the throughput.
MAX_GROUP = 1024

# Dedupe keys are kept this long by default (DEDUPE_KEEP_DAYS): a client that retries or resumes
# an upload does so within days; a result re-sent after a month is stored again.
DEDUPE_KEEP_SECONDS = 30 * 86400
# ... and at most this many (DEDUPE_MAX_KEYS), 440-510 bytes each on disk (~0.5 GB at most).
DEDUPE_MAX_KEYS = 1_000_000
# Each process's writer prunes at least this often, and sooner after it accepted this many new
# keys (so between two minutes' prunes the cap is overshot by at most about that many per
# process); one transaction deletes at most PRUNE_CHUNK keys, so a large backlog never holds the
# database lock for long.
PRUNE_INTERVAL_S = 60.0
PRUNE_EVERY_KEYS = 10_000
PRUNE_CHUNK = 2000

# ``accepted``: unix seconds of the first acceptance (pruning by age). A database from before
# pruning gets the column on open (see ``_migrate``).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    dedupe_key TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    output_hash TEXT NOT NULL,
    user_id TEXT NOT NULL,
    accepted INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_user ON seen(user_id);
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    received REAL NOT NULL,
    record TEXT NOT NULL,
    batch TEXT
);
CREATE INDEX IF NOT EXISTS pending_batch ON pending(batch);
CREATE INDEX IF NOT EXISTS pending_user ON pending(user_id);
CREATE TABLE IF NOT EXISTS health_probe (n INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""
# Bumped when opening a database needs a one-time step. 1: VACUUM once, because pages freed
# before ``secure_delete`` was on may still hold deleted rows' bytes.
_USER_VERSION = 1
# What the health probe writes (and deletes in the same transaction): more than a page, so a
# database that can no longer grow (disk full) fails the probe as it fails a submission.
_PROBE_BYTES = 8192
_BUSY_TIMEOUT_MS = 10_000
# A truncating checkpoint waits for other connections' reads and writes to end (other API worker
# processes' short statements; an operator's sqlite3 shell may hold one open). It holds the
# connection lock meanwhile, stalling submissions, so it waits less than a write would; if
# another worker keeps writing the whole time, the GDPR request answers 503 and is safe to repeat.
_CHECKPOINT_WAIT_MS = 2_000
_WAL_KEEP_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One submission to make durable: its dedupe identity and its complete record."""

    dedupe_key: str
    record: Mapping[str, Any]  # as built by tasks.records.schema.make_record


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Literal["accepted", "duplicate"]
    id: str
    hash: str


@dataclass(frozen=True, slots=True)
class PendingStats:
    count: int
    models: list[str]
    last_submission: datetime | None


def batch_keys(batch: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The files one batch becomes: one per (day, user) partition, all named after the batch.

    The name is a pure function of the batch id, so writing a batch again hits the same keys.
    """
    stamp, _, suffix = batch.partition("_")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        ts: datetime = row["timestamp"]
        key = (
            f"{user_day_prefix(ts.date(), row['user_id'])}"
            f"{SOURCE_COMMUNITY}_{stamp}_{suffix[:8]}.parquet"
        )
        groups.setdefault(key, []).append(row)
    return groups


def _encode(record: Mapping[str, Any]) -> str:
    return json.dumps(
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in record.items()},
        separators=(",", ":"),
    )


def _decode(text: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(text)
    record["timestamp"] = datetime.fromisoformat(record["timestamp"])
    return record


class ProcessLock:
    """A re-entrant lock held against other threads of this process *and* other processes: a
    thread lock plus an exclusive ``flock`` on ``path``, taken by the outermost acquire.

    ``flock`` belongs to an open file description, so two ``ProcessLock`` objects on one path
    exclude each other even in one process, as two processes would. The kernel drops the lock
    when its process dies, so a crash mid-flush never leaves the spool locked.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._thread = threading.RLock()
        self._depth = 0

    def __enter__(self) -> None:
        self._thread.acquire()
        try:
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_EX)  # waits for another process's flush
        except BaseException:
            self._thread.release()
            raise
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def close(self) -> None:
        with self._thread:
            if self._fd >= 0:
                os.close(self._fd)  # also releases the flock
                self._fd = -1


class Spool:
    """A durable queue of community submissions in ``directory`` (a local disk)."""

    def __init__(
        self, directory: Path | str, *, max_group: int = MAX_GROUP, max_bytes: int | None = None,
        dedupe_keep_seconds: float = DEDUPE_KEEP_SECONDS, dedupe_max_keys: int = DEDUPE_MAX_KEYS,
        prune_every_keys: int = PRUNE_EVERY_KEYS,
    ) -> None:
        """``max_bytes`` caps the database file (SQLite's ``max_page_count``): past it every
        write fails with "database or disk is full", exactly as on a full disk.
        ``dedupe_keep_seconds`` and ``dedupe_max_keys`` bound the ``seen`` table; the writer
        prunes it every ``PRUNE_INTERVAL_S`` or after ``prune_every_keys`` new keys."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / DB_NAME
        self._max_group = max_group
        self.dedupe_keep_seconds = dedupe_keep_seconds
        self.dedupe_max_keys = dedupe_max_keys
        self._prune_every_keys = prune_every_keys
        # Held for a whole flush and for GDPR operations, so that neither sees the other halfway,
        # in this process or any other sharing the spool.
        self._exclusive = ProcessLock(self.directory / LOCK_NAME)
        # One connection per process, serialized by a lock: every statement is short (the store
        # I/O of a flush happens outside it). Other processes' connections wait for the write
        # lock up to the busy timeout.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            # Opening runs one-time steps (WAL, schema, VACUUM, migration): one process at a time.
            with self._exclusive:
                self._conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                # Several processes writing at once can keep a checkpoint from restarting the
                # log for a while, so it grows; once it restarts, it is cut back to this.
                self._conn.execute(f"PRAGMA journal_size_limit={_WAL_KEEP_BYTES}")
                # Deleted rows are zeroed in place: a forgotten user's id must not survive in
                # free pages.
                self._conn.execute("PRAGMA secure_delete=ON")
                self._conn.executescript(_SCHEMA)
                self._migrate()
                (version,) = self._conn.execute("PRAGMA user_version").fetchone()
                if version < _USER_VERSION:
                    self._conn.execute("VACUUM")
                    self._conn.execute(f"PRAGMA user_version={_USER_VERSION}")
        except BaseException:
            self._conn.close()
            self._exclusive.close()
            raise
        if max_bytes is not None:
            (page_size,) = self._conn.execute("PRAGMA page_size").fetchone()
            self._conn.execute(f"PRAGMA max_page_count={max(1, max_bytes // page_size)}")
        self._db = threading.Lock()
        # Pruning of ``seen``, done by the writer thread between group commits.
        self._next_prune = 0.0
        self._keys_since_prune = 0
        self._queue: queue.SimpleQueue[tuple[list[SpoolEntry], Future[list[Outcome]]] | None] = (
            queue.SimpleQueue()
        )
        self._writer: threading.Thread | None = None
        self._writer_start = threading.Lock()
        self._closed = False
        self._listeners: list[Callable[[], None]] = []
        # The last group commit's error, cleared by the next one that succeeds (health reports it).
        self.last_write_error: str | None = None

    def _migrate(self) -> None:
        """Give a ``seen`` table from before pruning its ``accepted`` column, and the index."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(seen)")}
        if "accepted" not in columns:
            # A constant default costs nothing (old rows read it from the schema; none is
            # rewritten), and old keys count as accepted now: they are kept a full period.
            self._conn.execute("ALTER TABLE seen ADD COLUMN accepted INTEGER NOT NULL "
                               f"DEFAULT {int(time.time())}")
        self._conn.execute("CREATE INDEX IF NOT EXISTS seen_accepted ON seen(accepted)")

    # --- writing -------------------------------------------------------------------------------

    def submit(self, entries: Sequence[SpoolEntry]) -> Future[list[Outcome]]:
        """Queue entries for the next group commit; the future resolves once they are durable."""
        fut: Future[list[Outcome]] = Future()
        if self._closed:
            fut.set_exception(SpoolError("the submission spool is closed"))
            return fut
        self._ensure_writer()
        self._queue.put((list(entries), fut))
        return fut

    def append(self, entries: Sequence[SpoolEntry]) -> list[Outcome]:
        """Make entries durable and return one outcome each (blocking)."""
        return self.submit(entries).result()

    def on_append(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each group commit (the flusher uses it to watch the size)."""
        self._listeners.append(callback)

    def _ensure_writer(self) -> None:
        if self._writer is not None:
            return
        with self._writer_start:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="spool-writer", daemon=True
                )
                self._writer.start()

    def _write_loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, self._next_prune - time.monotonic()))
            except queue.Empty:
                self._maintain()
                continue
            if item is None:
                return
            group = []
            size = 0
            while True:
                # A request cancelled while queued (client gone, server stopping) is dropped
                # here, unacknowledged; once running its future can no longer be cancelled.
                if item[1].set_running_or_notify_cancel():
                    group.append(item)
                    size += len(item[0])
                if size >= self._max_group:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this group, then stop
                    break
            if not group:
                continue
            try:
                results = self._commit([entries for entries, _ in group])
            except Exception as exc:
                # The client is told the cause but not where the spool lives; the log says both.
                self.last_write_error = f"{type(exc).__name__}: {exc}"
                log.error("spool write failed (%s): %s", self.path, self.last_write_error)
                err = SpoolError(f"could not write to the spool: {exc}")
                for _, fut in group:
                    fut.set_exception(err)
                continue
            self.last_write_error = None
            for (_, fut), outcome in zip(group, results, strict=True):
                fut.set_result(outcome)
                self._keys_since_prune += sum(o.status == "accepted" for o in outcome)
            for callback in self._listeners:
                callback()
            self._maintain()

    def _maintain(self) -> None:
        """Prune one chunk of ``seen`` when due; the queue is checked between chunks, so
        submissions never wait behind a long prune."""
        now = time.monotonic()
        if now < self._next_prune and self._keys_since_prune < self._prune_every_keys:
            return
        self._keys_since_prune = 0
        try:
            removed = self.prune_seen(max_rows=PRUNE_CHUNK)
        except Exception as exc:  # e.g. another process held the lock too long: next time
            log.warning("could not prune the spool's dedupe keys: %s", exc)
            removed = 0
        # A full chunk means more is due: go on as soon as the queue is empty.
        self._next_prune = now if removed >= PRUNE_CHUNK else now + PRUNE_INTERVAL_S

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the connection lock; on any error, roll back
        (unless SQLite already did) and re-raise the original error."""
        with self._db:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")  # synchronous=FULL: durable when this returns
            except BaseException:
                # After SQLITE_FULL or an I/O error SQLite has rolled back on its own, and a
                # second ROLLBACK would raise "no transaction is active" in place of the cause.
                if self._conn.in_transaction:
                    try:
                        cur.execute("ROLLBACK")
                    except sqlite3.Error as exc:
                        log.warning("spool rollback failed (after an earlier error): %s", exc)
                raise

    def _commit(self, groups: list[list[SpoolEntry]]) -> list[list[Outcome]]:
        now = time.time()
        out: list[list[Outcome]] = []
        with self._transaction() as cur:
            for entries in groups:
                outcomes = []
                for entry in entries:
                    rec = entry.record
                    cur.execute(
                        "INSERT OR IGNORE INTO seen (dedupe_key, id, output_hash, user_id, "
                        "accepted) VALUES (?, ?, ?, ?, ?)",
                        (entry.dedupe_key, rec["id"], rec["output_hash"], rec["user_id"],
                         int(now)),
                    )
                    if cur.rowcount == 1:
                        cur.execute(
                            "INSERT INTO pending (user_id, model_id, ts, received, record) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (rec["user_id"], rec["model_id"], rec["timestamp"].isoformat(),
                             now, _encode(rec)),
                        )
                        outcomes.append(Outcome("accepted", rec["id"], rec["output_hash"]))
                    else:
                        first_id, first_hash = cur.execute(
                            "SELECT id, output_hash FROM seen WHERE dedupe_key = ?",
                            (entry.dedupe_key,),
                        ).fetchone()
                        outcomes.append(Outcome("duplicate", first_id, first_hash))
                out.append(outcomes)
        return out

    def prune_seen(self, *, now: float | None = None, max_rows: int | None = None) -> int:
        """Forget dedupe keys accepted more than ``dedupe_keep_seconds`` ago, then the oldest
        beyond ``dedupe_max_keys``; return how many. Each transaction deletes at most
        ``PRUNE_CHUNK`` keys; ``max_rows`` stops early (the writer thread prunes a chunk at a
        time). Several processes may prune at once: each deletes what is still there."""
        now = time.time() if now is None else now
        cutoff = int(now - self.dedupe_keep_seconds)
        removed = 0
        while max_rows is None or removed < max_rows:
            chunk = PRUNE_CHUNK if max_rows is None else min(PRUNE_CHUNK, max_rows - removed)
            with self._transaction() as cur:
                cur.execute(
                    "DELETE FROM seen WHERE dedupe_key IN (SELECT dedupe_key FROM seen "
                    "WHERE accepted < ? ORDER BY accepted LIMIT ?)", (cutoff, chunk),
                )
                gone = cur.rowcount
            if gone < chunk:
                # Every expired key is gone; now the cap, oldest first. (Counted outside the
                # write transaction: a count of a large table must not hold the write lock.)
                with self._db:
                    (count,) = self._conn.execute("SELECT count(*) FROM seen").fetchone()
                excess = min(count - self.dedupe_max_keys, chunk - gone)
                if excess > 0:
                    with self._transaction() as cur:
                        cur.execute(
                            "DELETE FROM seen WHERE dedupe_key IN (SELECT dedupe_key FROM seen "
                            "ORDER BY accepted LIMIT ?)", (excess,),
                        )
                        gone += cur.rowcount
            removed += gone
            if gone < chunk:
                break
        if removed:
            log.info("pruned %d dedupe key(s) from the spool", removed)
        return removed

    def seen_count(self) -> int:
        """How many dedupe keys the spool remembers."""
        with self._db:
            return int(self._conn.execute("SELECT count(*) FROM seen").fetchone()[0])

    def probe(self) -> None:
        """Write (and delete) a few kilobytes in one durable transaction; raise ``SpoolError``
        with SQLite's reason when the spool cannot write (closed, disk full, read-only)."""
        if self._closed:
            raise SpoolError("the submission spool is closed")
        try:
            with self._transaction() as cur:
                cur.execute("INSERT INTO health_probe VALUES (1, zeroblob(?))",
                            (_PROBE_BYTES,))
                cur.execute("DELETE FROM health_probe")
        except sqlite3.Error as exc:
            raise SpoolError(f"the spool cannot write: {exc}") from exc

    # --- reading -------------------------------------------------------------------------------

    def pending_count(self) -> int:
        with self._db:
            return int(self._conn.execute("SELECT count(*) FROM pending").fetchone()[0])

    def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest pending row was acknowledged, or None when empty."""
        with self._db:
            (oldest,) = self._conn.execute("SELECT min(received) FROM pending").fetchone()
        return None if oldest is None else max(0.0, time.time() - oldest)

    def pending_records(self) -> list[dict[str, Any]]:
        with self._db:
            rows = self._conn.execute("SELECT record FROM pending ORDER BY seq").fetchall()
        return [_decode(text) for (text,) in rows]

    def pending_stats(self, user_id: str) -> PendingStats:
        """What the user has acknowledged but not yet flushed (so their stats never lag)."""
        with self._db:
            count, last = self._conn.execute(
                "SELECT count(*), max(ts) FROM pending WHERE user_id = ?", (user_id,)
            ).fetchone()
            models = [
                m for (m,) in self._conn.execute(
                    "SELECT DISTINCT model_id FROM pending WHERE user_id = ? ORDER BY model_id",
                    (user_id,),
                )
            ]
        return PendingStats(int(count), models, datetime.fromisoformat(last) if last else None)

    # --- flushing ------------------------------------------------------------------------------

    def flush(self, store: ObjectStore, *, batch_rows: int = 5000) -> int:
        """Write every pending row to ``store`` as Parquet; return how many rows were written.

        Raises whatever the store raises; rows of a batch that failed stay pending (claimed) and
        are written to the same keys by the next flush.
        """
        total = 0
        with self._exclusive:
            while True:
                batch = self._unfinished_batch() or self._claim(batch_rows)
                if batch is None:
                    return total
                total += self._write_batch(store, batch)

    def _unfinished_batch(self) -> str | None:
        with self._db:
            row = self._conn.execute(
                "SELECT batch FROM pending WHERE batch IS NOT NULL ORDER BY seq LIMIT 1"
            ).fetchone()
        return row[0] if row else None

    def _claim(self, batch_rows: int) -> str | None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        batch = f"{stamp}_{uuid.uuid4().hex[:8]}"
        with self._transaction() as cur:
            cur.execute(
                "UPDATE pending SET batch = ? WHERE seq IN "
                "(SELECT seq FROM pending WHERE batch IS NULL ORDER BY seq LIMIT ?)",
                (batch, batch_rows),
            )
            claimed = cur.rowcount
        return batch if claimed else None

    def _write_batch(self, store: ObjectStore, batch: str) -> int:
        with self._db:
            rows = [
                _decode(text)
                for (text,) in self._conn.execute(
                    "SELECT record FROM pending WHERE batch = ? ORDER BY seq", (batch,)
                )
            ]
        for key, group in batch_keys(batch, rows).items():
            store.put(key, table_to_parquet(to_table(group)))
        # A community result may belong to a day the nightly flow already aggregated (a late
        # submission): mark its days so the next run re-aggregates them.
        for day in sorted({row["timestamp"].date() for row in rows}):
            store.put(dirty_marker_key(day), b"")
        with self._db:
            self._conn.execute("DELETE FROM pending WHERE batch = ?", (batch,))
        log.info("flushed %d submission(s) of batch %s", len(rows), batch)
        return len(rows)

    # --- GDPR ----------------------------------------------------------------------------------

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """No flush runs while this is held, in this process or another sharing the spool (GDPR
        operations hold it around their store work)."""
        with self._exclusive:
            yield

    def forget_user(self, user_id: str, *, keep_pending: bool = False) -> int:
        """Drop the user's pending rows (unless ``keep_pending``) and dedupe keys; return rows
        dropped. A deleted user's unflushed data must not reach the store after the delete.

        Then the write-ahead log is checkpointed and truncated: until then it would still hold
        every copy of the user's rows it ever logged (the database file itself is clean, thanks
        to ``secure_delete``). Raises ``SpoolError`` if the log could not be truncated; running
        it again finishes the job.
        """
        with self._exclusive:
            try:
                with self._transaction() as cur:
                    dropped = 0
                    if not keep_pending:
                        cur.execute("DELETE FROM pending WHERE user_id = ?", (user_id,))
                        dropped = cur.rowcount
                    cur.execute("DELETE FROM seen WHERE user_id = ?", (user_id,))
            except sqlite3.Error as exc:
                raise SpoolError(f"could not forget the user's submissions: {exc}") from exc
            self.truncate_log()
        return dropped

    def truncate_log(self) -> None:
        """Copy the write-ahead log into the database and truncate it to zero bytes; raise
        ``SpoolError`` if another connection's read kept it from finishing."""
        with self._db:
            self._conn.execute(f"PRAGMA busy_timeout={_CHECKPOINT_WAIT_MS}")
            try:
                busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:
                raise SpoolError(f"could not truncate the spool's write-ahead log: {exc}") from exc
            finally:
                self._conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        if busy:
            raise SpoolError(
                "could not truncate the spool's write-ahead log: another connection is reading it"
            )

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Finish queued commits, then close the database. Pending rows stay for the next start."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
        # A submit that raced with close() must not wait forever.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[1].set_running_or_notify_cancel():
                item[1].set_exception(SpoolError("the submission spool is closed"))
        with self._db:
            self._conn.close()
        self._exclusive.close()
